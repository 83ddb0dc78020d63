// The audit record of a request, whatever its outcome. The line bytes written by
// `encodeRecordLine` are the Merkle leaves of evidence format v1, so the encoding
// must not depend on how the caller built the object.
import { createHash } from 'node:crypto';
import { endianness } from 'node:os';
import { z } from 'zod';
import { maskingRuleSchema, maskingScopes } from '../policy/schema.ts';
import { compileJsonEncoder } from './line-encoder.ts';

export const ulidSchema = z.string().regex(/^[0-7][0-9A-HJKMNP-TV-Z]{25}$/, 'must be a ULID');
/** RFC 3339 in UTC with milliseconds, as `Date.prototype.toISOString` writes it. */
export const timestampSchema = z.iso.datetime({ precision: 3 });
export const sha256HexSchema = z.string().regex(/^[0-9a-f]{64}$/, 'must be a lower-case hex SHA-256');

/**
 * `request`: a request's record. A request forwarded to the model has two, so
 * the wait for the disk overlaps the model's own latency: an `incomplete` first
 * part made durable while the model works, then the full record, which names
 * the first in `completes`. A crash in between leaves the first part alone: the
 * request is known, its outcome is not. Any other request has one record.
 * `approval.requested` and `approval.decided` are an approval's own trail,
 * written while a request is held: always with `approval`, and with `status` null.
 */
export const recordKinds = ['request', 'approval.requested', 'approval.decided'] as const;

export const recordOutcomes = [
  'allowed',
  'denied',
  'unauthenticated',
  'rate_limited',
  'too_large',
  'invalid',
  'held',
  'approval_denied',
  'approval_expired',
  'upstream_error',
  'unavailable',
  'incomplete',
] as const;
export type RecordOutcome = (typeof recordOutcomes)[number];

/** `passthrough` is an allowed non-embedding route; `unknown` a request no dialect recognised. */
export const apiDialects = ['openai', 'tei', 'ollama', 'cohere', 'passthrough', 'unknown'] as const;

const shortText = z.string().min(1).max(512);

export const identitySchema = z.strictObject({
  issuer: shortText,
  subject: shortText,
  groups: z.array(shortText).max(256),
});

export const podSchema = z.strictObject({ namespace: shortText, name: shortText, uid: shortText });

export const policyRefSchema = z.strictObject({ name: shortText, hash: shortText });

/** An input as the record keeps it: a keyed digest, or the text after audit masking. */
export const recordedInputSchema = z.union([
  z.strictObject({ digest: shortText }),
  z.strictObject({ masked: z.string().max(65_536) }),
]);

/** What masking did, never the value it found. */
export const maskingActionSchema = z.strictObject({
  rule: shortText,
  detector: shortText,
  count: z.int().min(1),
  field: shortText,
  operator: maskingRuleSchema.shape.operator,
  /** Where the rule applied: `forward` means the model saw the masked text, so the vector changed. */
  scope: z.enum(maskingScopes).optional(),
});

export const approverSchema = z.strictObject({
  subject: shortText,
  time: timestampSchema,
  reason: z.string().max(1024).optional(),
});

export const approvalRefSchema = z.strictObject({
  id: shortText,
  approvers: z.array(approverSchema),
  requestedAt: timestampSchema,
  decidedAt: timestampSchema.optional(),
});

const milliseconds = z.number().min(0).max(86_400_000);

export const latencySchema = z.strictObject({
  totalMs: milliseconds,
  authMs: milliseconds.optional(),
  maskMs: milliseconds.optional(),
  approvalMs: milliseconds.optional(),
  upstreamMs: milliseconds.optional(),
  spoolMs: milliseconds.optional(),
});

export const vectorsSchema = z.strictObject({
  count: z.int().min(0),
  dimensions: z.int().min(0),
  /** See `vectorsDigest`. */
  digest: sha256HexSchema,
});

export const auditRecordSchema = z.strictObject({
  id: ulidSchema,
  time: timestampSchema,
  stream: shortText,
  seq: z.int().min(0),
  kind: z.enum(recordKinds).default('request'),
  /** The `id` of this request's `incomplete` first part, earlier in the same stream; see `recordKinds`. */
  completes: ulidSchema.optional(),
  outcome: z.enum(recordOutcomes),
  /**
   * The HTTP status sent to the caller; null when none was: an incomplete
   * record, or an approval record, written before any answer and itself answering nobody.
   */
  status: z.int().min(100).max(599).nullable(),
  identity: identitySchema.nullable(),
  pod: podSchema,
  /** Null when the sidecar had no valid policy (it then answers 503). */
  policy: policyRefSchema.nullable(),
  api: z.enum(apiDialects),
  route: shortText,
  model: shortText.nullable(),
  inputCount: z.int().min(0),
  inputs: z.array(recordedInputSchema).optional(),
  masking: z.array(maskingActionSchema).default([]),
  approval: approvalRefSchema.optional(),
  latency: latencySchema,
  vectors: vectorsSchema.optional(),
  /** Short and free of secrets and raw values: it is evidence, read by auditors. */
  error: z.string().min(1).max(256).optional(),
});

export type AuditRecord = z.infer<typeof auditRecordSchema>;
export type AuditRecordInput = z.input<typeof auditRecordSchema>;
export type MaskingAction = z.infer<typeof maskingActionSchema>;

const encodeValidRecord = compileJsonEncoder(auditRecordSchema);

/**
 * Validates `record` and serialises it as one NDJSON line (no newline). Keys come
 * out in schema order whatever order the caller used, so equal records give equal
 * bytes. Throws a ZodError on an invalid record: nothing unvalidated is recorded.
 */
export function encodeRecordLine(record: AuditRecordInput): string {
  // The derived encoder says only "invalid": zod itself then names the fields.
  return encodeValidRecord(record) ?? JSON.stringify(auditRecordSchema.parse(record));
}

export type ParsedRecordLine = { ok: true; record: AuditRecord } | { ok: false; error: string };

/**
 * How deep a record line's arrays and objects may nest before it is parsed.
 * The deepest record nests 4 (record, approval, approvers, an approver); a
 * line nested far deeper is no record, and JSON.parse of millions of brackets
 * (a few kilobytes of gzip) exhausts the heap before any schema sees it.
 */
export const maxRecordNesting = 8;

const quote = 0x22;
const backslash = 0x5c;
const [openBracket, closeBracket, openBrace, closeBrace] = [0x5b, 0x5d, 0x7b, 0x7d];

/** One pass over the line: brackets and braces outside strings, escapes honoured. */
function nestedDeeperThan(line: string, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i);
    if (inString) {
      if (c === backslash) i += 1;
      else if (c === quote) inString = false;
    } else if (c === quote) inString = true;
    else if (c === openBracket || c === openBrace) {
      depth += 1;
      if (depth > limit) return true;
    } else if (c === closeBracket || c === closeBrace) depth -= 1;
  }
  return false;
}

/**
 * Parses one line, which must be exactly what `encodeRecordLine` writes for its
 * record: any other spelling (a duplicate member, which JSON parsers resolve
 * differently, an escape where none is needed, members out of order) could say
 * one thing to this verifier and another to an auditor's own. The error names
 * the failing fields, never their values.
 */
export function parseRecordLine(line: string): ParsedRecordLine {
  if (nestedDeeperThan(line, maxRecordNesting)) {
    return { ok: false, error: `nested deeper than ${maxRecordNesting} levels: no record is` };
  }
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return { ok: false, error: 'not JSON' };
  }
  const result = auditRecordSchema.safeParse(value);
  if (!result.success) {
    const fields = result.error.issues.map((issue) => issue.path.join('.') || '(record)');
    return { ok: false, error: `invalid fields: ${[...new Set(fields)].join(', ')}` };
  }
  if (encodeValidRecord(result.data) !== line) {
    return {
      ok: false,
      error: 'not the canonical encoding of its record: other parsers may read it otherwise',
    };
  }
  return { ok: true, record: result.data };
}

/**
 * SHA-256 over the response vectors, in order, each as its float32
 * little-endian bytes: the digest auditors recompute from a replayed response.
 */
export function vectorsDigest(vectors: readonly ArrayLike<number>[]): string {
  const hash = createHash('sha256');
  let filled = 0;
  for (const vector of vectors) {
    if (filled + vector.length > scratch.length) {
      hash.update(littleEndianBytes(scratch, filled));
      filled = 0;
    }
    if (vector.length > scratch.length) {
      const floats = Float32Array.from(vector);
      hash.update(littleEndianBytes(floats, floats.length));
      continue;
    }
    // `set` converts in native code, where vector by vector in JavaScript cost more than the hash.
    scratch.set(vector, filled);
    filled += vector.length;
  }
  hash.update(littleEndianBytes(scratch, filled));
  return hash.digest('hex');
}

/**
 * Where vectors are converted to float32 before hashing, shared by every
 * digest (hashing is synchronous and `update` copies): a Float32Array a
 * response was external memory that a loaded sidecar's collector reclaimed late.
 */
const scratch = new Float32Array(16 * 1024);

const littleEndianHost = endianness() === 'LE';

/** The first `length` floats as little-endian bytes: on little-endian hosts (all Node targets in practice) their own. */
function littleEndianBytes(floats: Float32Array, length: number): Uint8Array {
  const bytes = new Uint8Array(floats.buffer, floats.byteOffset, length * 4);
  if (!littleEndianHost) {
    const view = new DataView(floats.buffer, floats.byteOffset);
    for (let i = 0; i < length; i++) view.setFloat32(i * 4, floats[i] ?? 0, true);
  }
  return bytes;
}
