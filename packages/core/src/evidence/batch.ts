// A batch object is gzip of UTF-8 NDJSON: consecutive records of one stream, one
// a line, each line ending in "\n". The Merkle leaves are the line bytes without
// the newline, so decoding hands back those exact bytes.
import { gunzipSync, gzipSync } from 'node:zlib';
import { z } from 'zod';
import { readEnvelope } from './envelope.ts';
import { sha256Hex } from './hash.ts';
import { MerkleTree } from './merkle.ts';
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

/**
 * How batches are compressed; any level and window is valid gzip. Level 1: a
 * record is mostly hex digests, ids and times, which the deeper match search of
 * higher levels barely shrinks (a few percent on typical records) for twice the
 * CPU or more. What repeats is mostly in the record just before, so an 8 KiB
 * window finds as much as the default 32 KiB, and with the largest hash table
 * zlib's tables stay in cache: about a quarter less CPU than the defaults
 * (compression was a quarter of the recording pipeline's), a little smaller too.
 */
export const batchGzipOptions = { level: 1, memLevel: 9, windowBits: 13 } as const;

/**
 * Builds a batch a line at a time, so that a caller sharing its thread with
 * live requests can pause between lines: a batch of thousands of records is
 * tens of milliseconds of work.
 */
export class BatchBuilder {
  readonly #lines: Uint8Array[] = [];
  readonly #tree = new MerkleTree();
  #textBytes = 0;
  #stream: string | undefined;
  #firstSeq = 0;
  #lastSeq = 0;
  #firstTime = '';
  #lastTime = '';

  get records(): number {
    return this.#lines.length;
  }

  /** The stream of the first line; undefined before one is added. */
  get stream(): string | undefined {
    return this.#stream;
  }

  /**
   * Adds the next record line: the UTF-8 bytes of a line `encodeRecordLine`
   * wrote, kept as they are (the caller must not change them afterwards).
   * False, and nothing added, for a line of another stream than the first: a
   * batch never mixes streams. Throws unless the line is the stream's next record.
   */
  add(line: Uint8Array): boolean {
    const record = readEnvelope(line);
    if (this.#stream === undefined) {
      this.#stream = record.stream;
      this.#firstSeq = record.seq;
      this.#firstTime = record.time;
      this.#lastTime = record.time;
    } else {
      if (record.stream !== this.#stream) return false;
      if (record.seq !== this.#lastSeq + 1) {
        throw new RangeError(`record seq ${record.seq} where ${this.#lastSeq + 1} was expected`);
      }
      if (record.time < this.#firstTime) this.#firstTime = record.time;
      if (record.time > this.#lastTime) this.#lastTime = record.time;
    }
    this.#lastSeq = record.seq;
    this.#lines.push(line);
    this.#textBytes += line.length + 1;
    this.#tree.add(line);
    return true;
  }

  /** The NDJSON the batch object is the gzip of. */
  text(): Buffer {
    const text = Buffer.allocUnsafe(this.#textBytes);
    let at = 0;
    for (const line of this.#lines) {
      text.set(line, at);
      at += line.length;
      text[at++] = 0x0a;
    }
    return text;
  }

  /** Describes the batch whose gzip (of `text()`) is `bytes`. */
  finish(bytes: Uint8Array): EncodedBatch {
    if (this.#stream === undefined) throw new RangeError('a batch holds at least one record');
    return {
      bytes,
      stream: this.#stream,
      content: {
        sha256: sha256Hex(bytes),
        records: this.#lines.length,
        firstSeq: this.#firstSeq,
        lastSeq: this.#lastSeq,
        firstTime: this.#firstTime,
        lastTime: this.#lastTime,
        merkleRoot: this.#tree.rootHex(),
      },
    };
  }
}

/**
 * Encodes record lines (from `encodeRecordLine`) as a batch and describes it.
 * Throws unless the lines are one stream's records with consecutive seqs.
 */
export function encodeBatch(lines: readonly string[]): EncodedBatch {
  const builder = new BatchBuilder();
  for (const line of lines) {
    if (!builder.add(Buffer.from(line, 'utf8'))) {
      throw new RangeError('a batch holds the records of one stream');
    }
  }
  return builder.finish(gzipSync(builder.text(), batchGzipOptions));
}

export type DecodedLine = { bytes: Uint8Array } & ParsedRecordLine;
/** `more`: the text held lines past `maxLines`, which were neither split off nor decoded. */
export type DecodedBatch = { ok: true; lines: DecodedLine[]; more: boolean } | { ok: false; error: string };
export type BatchText = { ok: true; text: Buffer } | { ok: false; error: string };

/**
 * How much of a batch to read. A batch is read before anything in it is
 * trusted, so a few kilobytes of gzip must not become millions of lines:
 * `maxLines` is what its manifest declares, plus one to tell a batch with more.
 */
export type BatchLimits = { maxBytes?: number; maxLines?: number };

/** Large enough for any batch a policy allows or ever allowed (256 MiB before 16 MiB), small enough to stop a gzip bomb. */
export const defaultMaxBatchBytes = 512 * 1024 * 1024;

// A BOM is kept, not stripped: stripped, a line with one would read as its record's canonical encoding.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Decodes a stored batch; a bad line is reported in place, never thrown. */
export function decodeBatch(bytes: Uint8Array, limits: BatchLimits = {}): DecodedBatch {
  const inflated = inflateBatch(bytes, limits.maxBytes);
  if (!inflated.ok) return inflated;
  const lines: DecodedLine[] = [];
  const { more } = forEachLine(inflated.text, (line) => lines.push(decodeLine(line)), limits.maxLines);
  return { ok: true, lines, more };
}

/** The NDJSON a stored batch is the gzip of, refused past `maxBytes`. */
export function inflateBatch(bytes: Uint8Array, maxBytes = defaultMaxBatchBytes): BatchText {
  try {
    return { ok: true, text: gunzipSync(bytes, { maxOutputLength: maxBytes }) };
  } catch (error) {
    const tooLarge = error instanceof RangeError;
    return { ok: false, error: tooLarge ? `larger than ${maxBytes} bytes uncompressed` : 'not gzip' };
  }
}

/**
 * Hands each line of `text` (its bytes, without the newline) to `visit`, up to
 * `maxLines` of them, one at a time: nothing is kept of a line `visit` lets go.
 * `more` tells whether lines were left past the limit.
 */
export function forEachLine(
  text: Buffer,
  visit: (line: Uint8Array, index: number) => void,
  maxLines = Number.POSITIVE_INFINITY,
): { lines: number; more: boolean } {
  let start = 0;
  let lines = 0;
  while (start < text.length) {
    if (lines >= maxLines) return { lines, more: true };
    // A last line without its newline still counts: dropping it would hide a record.
    const newline = text.indexOf(0x0a, start);
    const end = newline === -1 ? text.length : newline;
    visit(text.subarray(start, end), lines);
    lines += 1;
    start = end + 1;
  }
  return { lines, more: false };
}

const carriageReturn = 0x0d;

/** One record line, checked to be a v1 record in its canonical encoding; a bad line is described, never thrown. */
export function decodeLine(bytes: Uint8Array): DecodedLine {
  if (bytes.length === 0) return { bytes, ok: false, error: 'empty line' };
  // Lines end in "\n" alone: a reader splitting on "\r\n" would see other leaves than the Merkle root commits to.
  if (bytes.includes(carriageReturn)) return { bytes, ok: false, error: 'a carriage return in the line' };
  let line: string;
  try {
    line = utf8.decode(bytes);
  } catch {
    return { bytes, ok: false, error: 'not UTF-8' };
  }
  return { bytes, ...parseRecordLine(line) };
}
