// What the checks report. The codes and levels are the verifier's public API
// (re-exported by it); they live here so the checks need not import it.

export const findingCodes = [
  'bucket-lock-missing',
  'bucket-lock-disabled',
  'bucket-lock-default',
  'not-worm',
  'object-not-locked',
  'retention-too-short',
  'retention-expired',
  'replaced-object',
  'rewritten-object',
  'versions-not-compared',
  'hidden-object',
  'missing-bytes',
  'checksum-mismatch',
  'foreign-object',
  'manifest-malformed',
  'key-mismatch',
  'stream-mismatch',
  'pod-mismatch',
  'missing-genesis',
  'key-id-mismatch',
  'untrusted-key',
  'unknown-key',
  'signature-invalid',
  'chain-break',
  'after-close',
  'missing-batch',
  'batch-checksum-mismatch',
  'batch-misplaced',
  'batch-malformed',
  'merkle-mismatch',
  'record-malformed',
  'batch-range-mismatch',
  'seq-gap',
  'seq-conflict',
  'duplicate-record',
  'incomplete-record',
  'completion-mismatch',
  'close-mismatch',
  'unclosed-stream',
  'orphan-object',
  'keys-not-pinned',
  'retention-not-checked',
  'checksum-missing',
] as const;
export type FindingCode = (typeof findingCodes)[number];
export type FindingLevel = 'INVALID' | 'WARN';

export type Finding = {
  level: FindingLevel;
  stream: string;
  key: string;
  code: FindingCode;
  message: string;
};

/** For findings that belong to no stream. */
export const noStream = '-';

export type Report = (
  level: FindingLevel,
  stream: string,
  key: string,
  code: FindingCode,
  message: string,
) => void;
