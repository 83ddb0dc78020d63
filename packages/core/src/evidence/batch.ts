// A batch object is gzip of UTF-8 NDJSON: consecutive records of one stream, one
// a line, each line ending in "\n". The Merkle leaves are the line bytes without
// the newline, so decoding hands back those exact bytes.
import { gunzipSync, gzipSync } from 'node:zlib';
import { z } from 'zod';
import { sha256Hex } from './hash.ts';
import { merkleRootHex } from './merkle.ts';
import { type ParsedRecordLine, parseRecordLine, sha256HexSchema, timestampSchema } from './record.ts';

/** What a batch manifest says about its batch, bar the batch's object key. */
export const batchContentSchema = z.strictObject({
  /** Of the stored gzip object. */
  sha256: sha256HexSchema,
  records: z.int().min(1),
  firstSeq: z.int().min(0),
  lastSeq: z.int().min(0),
  /** The earliest and latest record `time`: records are in seq order, not time order. */
  firstTime: timestampSchema,
  lastTime: timestampSchema,
  merkleRoot: sha256HexSchema,
});
export type BatchContent = z.infer<typeof batchContentSchema>;

export type EncodedBatch = { bytes: Uint8Array; stream: string; content: BatchContent };

// The fields format v1 promises every record has; enough to describe a batch
// without paying for full validation of lines the recorder already validated.
const recordEnvelopeSchema = z.looseObject({
  stream: z.string().min(1),
  seq: z.int().min(0),
  time: timestampSchema,
});

/**
 * Encodes record lines (from `encodeRecordLine`) as a batch and describes it.
 * Throws unless the lines are one stream's records with consecutive seqs.
 */
export function encodeBatch(lines: readonly string[]): EncodedBatch {
  const first = lines[0];
  if (first === undefined) throw new RangeError('a batch holds at least one record');
  const head = envelope(first);
  let firstTime = head.time;
  let lastTime = head.time;
  let seq = head.seq;
  for (const line of lines.slice(1)) {
    const record = envelope(line);
    if (record.stream !== head.stream) throw new RangeError('a batch holds the records of one stream');
    seq += 1;
    if (record.seq !== seq) throw new RangeError(`record seq ${record.seq} where ${seq} was expected`);
    if (record.time < firstTime) firstTime = record.time;
    if (record.time > lastTime) lastTime = record.time;
  }
  const bytes = gzipSync(`${lines.join('\n')}\n`);
  return {
    bytes,
    stream: head.stream,
    content: {
      sha256: sha256Hex(bytes),
      records: lines.length,
      firstSeq: head.seq,
      lastSeq: seq,
      firstTime,
      lastTime,
      merkleRoot: merkleRootHex(lines.map((line) => Buffer.from(line, 'utf8'))),
    },
  };
}

function envelope(line: string): z.infer<typeof recordEnvelopeSchema> {
  if (/[\n\r]/.test(line)) throw new RangeError('a record line holds no line break');
  return recordEnvelopeSchema.parse(JSON.parse(line));
}

export type DecodedLine = { bytes: Uint8Array } & ParsedRecordLine;
export type DecodedBatch = { ok: true; lines: DecodedLine[] } | { ok: false; error: string };

/** Large enough for any batch the policy allows (256 MiB), small enough to stop a gzip bomb. */
export const defaultMaxBatchBytes = 512 * 1024 * 1024;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Decodes a stored batch; a bad line is reported in place, never thrown. */
export function decodeBatch(bytes: Uint8Array, maxBytes = defaultMaxBatchBytes): DecodedBatch {
  let text: Buffer;
  try {
    text = gunzipSync(bytes, { maxOutputLength: maxBytes });
  } catch (error) {
    const tooLarge = error instanceof RangeError;
    return { ok: false, error: tooLarge ? `larger than ${maxBytes} bytes uncompressed` : 'not gzip' };
  }
  return { ok: true, lines: splitLines(text).map(decodeLine) };
}

function splitLines(text: Buffer): Uint8Array[] {
  const lines: Uint8Array[] = [];
  let start = 0;
  while (start < text.length) {
    const end = text.indexOf(0x0a, start);
    if (end === -1) {
      // A last line without its newline still counts: dropping it would hide a record.
      lines.push(text.subarray(start));
      break;
    }
    lines.push(text.subarray(start, end));
    start = end + 1;
  }
  return lines;
}

function decodeLine(bytes: Uint8Array): DecodedLine {
  if (bytes.length === 0) return { bytes, ok: false, error: 'empty line' };
  let line: string;
  try {
    line = utf8.decode(bytes);
  } catch {
    return { bytes, ok: false, error: 'not UTF-8' };
  }
  return { bytes, ...parseRecordLine(line) };
}
