/**
 * Raised for invalid masking rules and for any failure while masking. Messages
 * name rules, detectors and fields, never the text being masked: callers log them.
 */
export class MaskingError extends Error {
  override name = 'MaskingError';
}
