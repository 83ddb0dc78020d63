export type ApiName = 'openai' | 'tei' | 'ollama' | 'cohere';

/** The form a caller asked its vectors in, across the four APIs. */
export type EmbeddingEncoding = 'float' | 'base64' | 'int8' | 'uint8' | 'binary' | 'ubinary';

export interface ParsedEmbedRequest {
  /** '' when the API carries no model (TEI). */
  model: string;
  /** Text inputs in order; [] when the inputs are token arrays. */
  texts: string[];
  /** OpenAI token-array inputs, else null. */
  tokenInputs: number[][] | null;
  /** texts.length or tokenInputs.length. */
  inputCount: number;
  /** Output dimensions the caller asked for (`dimensions`, Cohere's `output_dimension`), if any. */
  dimensions?: number;
  /** Vector encodings the caller asked for; absent when it left the API's default. */
  encodings?: readonly EmbeddingEncoding[];
  /** Where the body carries its texts; null when it carries none (token arrays, or no input). */
  textsAt: TextSlot | null;
}

/** Where a request body carries its texts: the field, and whether it holds one string or an array. */
export interface TextSlot {
  field: string;
  single: boolean;
}

/** An input as the caller's API names it: `texts[2]`, or `prompt` where the field holds one text. */
export function inputParam(slot: TextSlot | null, index: number): string {
  if (slot === null) return `input[${index}]`;
  return slot.single ? slot.field : `${slot.field}[${index}]`;
}

export interface VectorSummary {
  count: number;
  dimensions: number;
  /** SHA-256 over the vectors as float32 little-endian bytes: `vectorsDigest` of @veil/core. */
  digest: string;
}

export type ErrorCode =
  | 'invalid_request'
  | 'unauthenticated'
  | 'forbidden'
  | 'too_large'
  | 'rate_limited'
  | 'approval_required'
  | 'upstream_error'
  | 'upstream_timeout'
  | 'unavailable'
  | 'not_found'
  | 'internal';

export interface Dialect {
  readonly name: ApiName;
  /** POST paths it serves, e.g. ['/v1/embeddings']. */
  readonly paths: readonly string[];
  /** Validates and reads a parsed JSON body; throws DialectError(400, ...) with a field-specific message. */
  parse(body: unknown, path: string): ParsedEmbedRequest;
  /**
   * The same body with its text inputs replaced (same order/shape: string stays string, array stays
   * array). Throws DialectError(500) unless there are exactly as many texts as the body carries.
   */
  withTexts(body: unknown, path: string, texts: string[]): unknown;
  /** An error body in this API's own format, so its SDK raises a proper error. `param` names the field at fault. */
  errorBody(status: number, code: ErrorCode, message: string, param?: string | null): unknown;
  /** Count and dimensions of the vectors in a successful upstream response body (parsed JSON); throws DialectError(502) if it is not a valid embedding response. */
  vectors(responseBody: unknown, path: string): VectorSummary;
  /**
   * Top-level request fields of caller text besides the inputs (OpenAI's `user`): forward rules
   * mask them as they mask the inputs, as the model must see no value such a rule masks.
   */
  readonly optionTextFields?: readonly string[];
  /**
   * For an API whose responses echo the texts embedded (Cohere): the response body with the
   * caller's own texts in their place, or the same object when they are already there.
   */
  withCallerTexts?(responseBody: unknown, texts: readonly string[]): unknown;
}

/** The code a status means when the thrower names none. */
export function errorCodeForStatus(status: number): ErrorCode {
  switch (status) {
    case 400:
      return 'invalid_request';
    case 401:
      return 'unauthenticated';
    case 403:
      return 'forbidden';
    case 404:
      return 'not_found';
    case 413:
      return 'too_large';
    case 429:
      return 'rate_limited';
    case 502:
      return 'upstream_error';
    case 503:
      return 'unavailable';
    case 504:
      return 'upstream_timeout';
    default:
      return 'internal';
  }
}

export interface DialectErrorOptions {
  code?: ErrorCode;
  /** The request field at fault, e.g. 'input[2]'. */
  param?: string | null;
  /** What the audit record says, where the message quotes something of the caller's own. */
  detail?: string;
}

export class DialectError extends Error {
  readonly status: number;
  readonly code: ErrorCode;
  readonly param: string | null;
  readonly detail: string;

  constructor(status: number, message: string, options: DialectErrorOptions = {}) {
    super(message);
    this.name = 'DialectError';
    this.status = status;
    this.code = options.code ?? errorCodeForStatus(status);
    this.param = options.param ?? null;
    this.detail = options.detail ?? message;
  }
}
