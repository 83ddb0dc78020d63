// The durable audit spool: records are framed into append-only segment files and
// an append resolves only once its bytes are fsynced. Appends that arrive while a
// sync is in flight wait for the next one and share it (group commit), so one
// fsync makes many records durable.
//
// Frame: [u32 LE payload length][u32 LE CRC-32 of the length bytes then the payload][payload].
// A segment is named by the seq of its first record (`<seq:020>.seg`); a record's seq
// is its segment's first seq plus its index, so seqs need no bytes of their own and
// stay contiguous across restarts. The shipped watermark (the last seq S3 has
// acknowledged) lives in its own small file, replaced atomically.
import { type FileHandle, open, readdir, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { DEFAULT_SPOOL_CAPACITY_BYTES } from '@veil/core';
import { mkdirDurable, syncDir, tempPathOf, writeFileAtomic } from '../files.ts';
import { SpaceReserve } from './reserve.ts';
import { lockSpool, type SpoolLock } from './spool-lock.ts';

/** The spool holds as much as it may: the sidecar refuses new requests (503) rather than drop a record. */
export class SpoolFullError extends Error {
  override name = 'SpoolFullError';
}

/** A segment or the watermark is damaged other than by a torn last write; nothing is guessed. */
export class SpoolCorruptError extends Error {
  override name = 'SpoolCorruptError';
}

/** A write or sync failed: what reached the disk is unknown, so the spool takes nothing more until reopened. */
export class SpoolFailedError extends Error {
  override name = 'SpoolFailedError';
}

export type SpoolOptions = {
  dir: string;
  /** A segment is closed and a new one started once it reaches this size. */
  segmentBytes?: number;
  /** Bytes on disk plus bytes waiting to be written, at most. */
  capacityBytes?: number;
  /** Milliseconds, for how long records wait (ages only); by default a clock that never steps back. */
  now?: () => number;
};

/** `bytes`: the record line as appended, UTF-8. */
export type SpoolEntry = { seq: number; bytes: Buffer };

export type SpoolStats = {
  /** On disk (segments not yet deleted) plus waiting for the next sync. */
  bytes: number;
  /** Durable records not yet released by the shipper. */
  waiting: number;
  /** Null when nothing waits. For records found on open, a lower bound: their segment's last write. */
  oldestUnshippedAgeMs: number | null;
  /** Data syncs done since open: fewer than appends under concurrency. */
  syncs: number;
  /** Commit times kept to tell records' ages: at most `maxCommitTimes`, however many records wait. */
  commitTimes: number;
  nextSeq: number;
  /** The last seq released, -1 for none. */
  shippedSeq: number;
};

/** What opening found: the records not yet shipped, and the bytes of a torn tail cut off. */
export type SpoolRecovery = { records: number; truncatedBytes: number };

type Segment = { firstSeq: number; path: string; size: number; offsets: number[] };
type Pending = { frame: Buffer; resolve: (result: { seq: number }) => void; reject: (error: Error) => void };
/** When the group of records from `seq` on became durable. */
type Commit = { seq: number; time: number };

const headerBytes = 8;
const segmentPattern = /^(\d{20})\.seg$/;
const watermarkName = 'shipped';
const readChunkBytes = 1024 * 1024;
const openBrace = 0x7b;
const closeBrace = 0x7d;
export const defaultSegmentBytes = 64 * 1024 * 1024;
/** How long a record that is not urgent waits for another append's sync before it starts one. */
export const lateSyncMs = 5;
/** A record's commit time is known to this much: ages and batch cuts by age need no finer. */
const commitTimeResolutionMs = 100;
/**
 * The most commit times kept. Requests further apart than the resolution while
 * the store is away would otherwise add one per record, up to a million for a
 * full spool; past this, every other time is forgotten (see `thinCommits`).
 */
const maxCommitTimes = 4096;
/** The most room kept on the volume for shipping's own writes (a sixteenth of the capacity below that). */
const maxReserveBytes = 1024 * 1024;

export class Spool {
  readonly #dir: string;
  readonly #segmentBytes: number;
  readonly #capacityBytes: number;
  readonly #now: () => number;
  readonly #segments: Segment[];
  readonly #commits: Commit[];
  readonly recovery: SpoolRecovery;
  readonly #lock: SpoolLock;
  /** Room on the volume kept for the writes that let shipping free it. */
  readonly reserve: SpaceReserve;
  #active: FileHandle;
  #nextSeq: number;
  #shippedSeq: number;
  #diskBytes: number;
  #pending: Pending[] = [];
  #pendingBytes = 0;
  #flushing: Promise<void> | undefined;
  #lateSync: NodeJS.Timeout | undefined;
  #releasing: Promise<void> = Promise.resolve();
  readonly #reader = new SegmentReader();
  #syncs = 0;
  #failure: Error | undefined;
  #closed = false;

  private constructor(
    options: Required<SpoolOptions>,
    state: OpenState,
    lock: SpoolLock,
    reserve: SpaceReserve,
  ) {
    this.#dir = options.dir;
    this.#segmentBytes = options.segmentBytes;
    this.#capacityBytes = options.capacityBytes;
    this.#now = options.now;
    this.#segments = state.segments;
    this.#commits = state.commits;
    this.#active = state.active;
    this.#nextSeq = state.nextSeq;
    this.#shippedSeq = state.shippedSeq;
    this.#diskBytes = state.segments.reduce((total, segment) => total + segment.size, 0);
    this.recovery = state.recovery;
    this.#lock = lock;
    this.reserve = reserve;
  }

  /**
   * Opens (creating if need be) the spool in `dir`, cutting off a torn tail left
   * by a crash. Throws `SpoolInUseError` while another process has it open.
   */
  static async open(options: SpoolOptions): Promise<Spool> {
    const resolved: Required<SpoolOptions> = {
      dir: options.dir,
      segmentBytes: options.segmentBytes ?? defaultSegmentBytes,
      capacityBytes: options.capacityBytes ?? DEFAULT_SPOOL_CAPACITY_BYTES,
      now: options.now ?? monotonicNow,
    };
    if (!(resolved.segmentBytes > 0 && resolved.capacityBytes >= resolved.segmentBytes)) {
      throw new RangeError('the spool capacity must hold at least one segment');
    }
    await mkdirDurable(resolved.dir);
    const lock = await lockSpool(resolved.dir);
    try {
      const reserveBytes = Math.min(maxReserveBytes, Math.floor(resolved.capacityBytes / 16));
      // On a full volume the last segment starts no new records: it can then be deleted once shipped.
      const fresh = await SpaceReserve.low(resolved.dir, reserveBytes);
      const state = await recover(resolved, fresh);
      return new Spool(resolved, state, lock, await SpaceReserve.open(resolved.dir, reserveBytes));
    } catch (error) {
      await lock.release();
      throw error;
    }
  }

  /**
   * Resolves with the record's seq once it is durable; rejects without
   * assigning one otherwise. A record that is not `urgent` starts no sync of
   * its own: it joins the next one, which another append starts or, when none
   * comes, a timer starts `lateSyncMs` later. That spares an fsync for records
   * nobody waits on (the second part of a forwarded request). `line` may
   * come framed already (`frameLine`), as the caller that checked its size has it.
   */
  append(line: string | SpoolFrame, options: { urgent?: boolean } = {}): Promise<{ seq: number }> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#closed) return Promise.reject(new SpoolFailedError('the spool is closed'));
    const frame = typeof line === 'string' ? frameLine(line) : line;
    if (this.#diskBytes + this.#pendingBytes + frame.length > this.#capacityBytes) {
      return Promise.reject(new SpoolFullError(`the audit spool holds ${this.#capacityBytes} bytes at most`));
    }
    this.#pendingBytes += frame.length;
    return new Promise((resolve, reject) => {
      this.#pending.push({ frame, resolve, reject });
      if (options.urgent === false) this.#syncLater();
      else this.#syncSoon();
    });
  }

  /** After the current task, so appends made in the same tick share the sync. */
  #syncSoon(): void {
    clearTimeout(this.#lateSync);
    this.#lateSync = undefined;
    this.#flushing ??= Promise.resolve().then(() => this.#flush());
  }

  #syncLater(): void {
    // A running flush takes every pending record before it stops.
    if (this.#flushing || this.#lateSync) return;
    this.#lateSync = setTimeout(() => this.#syncSoon(), lateSyncMs);
  }

  /**
   * Up to `maxRecords` durable records from `seq` on, in order, stopping before
   * `maxBytes` of lines (the first record always comes, whatever its size).
   */
  async readFrom(seq: number, maxRecords: number, maxBytes: number): Promise<SpoolEntry[]> {
    if (!Number.isSafeInteger(seq) || seq < 0) throw new RangeError('seq must be a non-negative integer');
    const entries: SpoolEntry[] = [];
    let bytes = 0;
    let next = seq;
    const first = this.#segments.findIndex((segment) => seq < segment.firstSeq + segment.offsets.length);
    if (seq < this.#nextSeq && (first === -1 || (this.#segments[first]?.firstSeq ?? 0) > seq)) {
      throw new RangeError(`seq ${seq} has been released`);
    }
    for (const segment of first === -1 ? [] : this.#segments.slice(first)) {
      const from = next - segment.firstSeq;
      let to = from;
      while (to < segment.offsets.length && entries.length + (to - from) < maxRecords) {
        const payload = frameEnd(segment, to) - (segment.offsets[to] ?? 0) - headerBytes;
        if (entries.length + (to - from) > 0 && bytes + payload > maxBytes) break;
        bytes += payload;
        to += 1;
      }
      // Not push(...): a batch may hold more records than a call takes arguments.
      if (to > from)
        for (const entry of await readRecords(this.#reader, segment, from, to)) entries.push(entry);
      next = segment.firstSeq + to;
      if (to < segment.offsets.length) break;
    }
    return entries;
  }

  /**
   * Marks every record up to `uptoSeq` as shipped: the watermark is made durable,
   * then whole segments holding nothing newer are deleted.
   */
  release(uptoSeq: number): Promise<void> {
    if (!Number.isSafeInteger(uptoSeq) || uptoSeq >= this.#nextSeq) {
      return Promise.reject(new RangeError(`seq ${uptoSeq} is not durable yet`));
    }
    const run = this.#releasing.then(() => this.#release(uptoSeq));
    // One failed release must not fail every later one.
    this.#releasing = run.catch(() => undefined);
    return run;
  }

  /** Whether a write failed: the spool then refuses every record until it is opened again. */
  failed(): boolean {
    return this.#failure !== undefined;
  }

  /** Bytes still free for new records: 0 once failed or closed. */
  room(): number {
    if (this.#closed || this.#failure) return 0;
    return Math.max(0, this.#capacityBytes - this.#diskBytes - this.#pendingBytes);
  }

  /** Bytes on disk of the durable records from `seq` on: what a batch cut there would take. */
  bytesFrom(seq: number): number {
    let bytes = 0;
    for (const segment of this.#segments) {
      const index = seq - segment.firstSeq;
      if (index >= segment.offsets.length) continue;
      bytes += segment.size - (index > 0 ? (segment.offsets[index] ?? 0) : 0);
    }
    return bytes;
  }

  /**
   * How long ago record `seq` became durable, in milliseconds on the spool's
   * clock; undefined once released or before it is durable. For records found
   * on open, a lower bound: since their segment's last write. Negative only
   * when that clock went back (the default one never does).
   */
  committedAgeMs(seq: number): number | undefined {
    if (seq <= this.#shippedSeq || seq >= this.#nextSeq) return undefined;
    // Commits run in seq order: the last one starting at or before seq holds it.
    let low = 0;
    let high = this.#commits.length - 1;
    while (low < high) {
      const middle = Math.ceil((low + high) / 2);
      if ((this.#commits[middle]?.seq ?? 0) <= seq) low = middle;
      else high = middle - 1;
    }
    const commit = this.#commits[low];
    return commit === undefined ? undefined : this.#now() - commit.time;
  }

  stats(): SpoolStats {
    const commit = this.#commits[0];
    const waiting = this.#nextSeq - this.#shippedSeq - 1;
    return {
      bytes: this.#diskBytes + this.#pendingBytes,
      waiting,
      oldestUnshippedAgeMs: waiting > 0 && commit ? Math.max(0, this.#now() - commit.time) : null,
      syncs: this.#syncs,
      commitTimes: this.#commits.length,
      nextSeq: this.#nextSeq,
      shippedSeq: this.#shippedSeq,
    };
  }

  /** Waits for appends already made to become durable, then closes the files. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#lateSync) this.#syncSoon();
    await this.#flushing;
    await this.#releasing;
    try {
      await this.#reader.close();
      await this.#active.close();
    } finally {
      await this.#lock.release();
    }
  }

  async #flush(): Promise<void> {
    while (this.#pending.length > 0) {
      const group = this.#pending;
      this.#pending = [];
      await this.#commit(group);
    }
    this.#flushing = undefined;
  }

  async #commit(group: readonly Pending[]): Promise<void> {
    const data = Buffer.concat(group.map((pending) => pending.frame));
    const segment = this.#segments.at(-1) as Segment;
    let before: { file: FileHandle; size: number } | undefined;
    try {
      if (this.#failure) throw this.#failure;
      const full = segment.size >= this.#segmentBytes && segment.offsets.length > 0;
      const target = full ? await this.#rotate() : segment;
      before = { file: this.#active, size: target.size };
      await writeAll(this.#active, data);
      await this.#active.datasync();
      this.#syncs += 1;
      const firstSeq = this.#nextSeq;
      for (const pending of group) {
        target.offsets.push(target.size);
        target.size += pending.frame.length;
      }
      // Pending until on disk, never neither: room() must not grow while the
      // group is being written, or appends in that window would overfill the spool.
      this.#pendingBytes -= data.length;
      this.#diskBytes += data.length;
      this.#nextSeq += group.length;
      this.#noteCommit(firstSeq);
      group.forEach((pending, index) => {
        pending.resolve({ seq: firstSeq + index });
      });
    } catch (error) {
      this.#pendingBytes -= data.length;
      this.#failure ??= new SpoolFailedError('an audit spool write failed', { cause: error });
      if (before) await cutBack(before.file, before.size);
      for (const pending of group) pending.reject(this.#failure);
    }
  }

  /** Commits closer together than `commitTimeResolutionMs` share the first one's time. */
  #noteCommit(seq: number): void {
    const time = this.#now();
    const last = this.#commits.at(-1);
    if (last !== undefined && time - last.time < commitTimeResolutionMs) return;
    this.#commits.push({ seq, time });
    if (this.#commits.length > maxCommitTimes) thinCommits(this.#commits);
  }

  async #rotate(): Promise<Segment> {
    const segment = {
      firstSeq: this.#nextSeq,
      path: segmentPath(this.#dir, this.#nextSeq),
      size: 0,
      offsets: [],
    };
    const previous = this.#active;
    // Opened before the old one closes, so a failure leaves one open handle to close.
    this.#active = await createSegment(this.#dir, segment.path);
    this.#segments.push(segment);
    await previous.close();
    return segment;
  }

  async #release(uptoSeq: number): Promise<void> {
    if (uptoSeq <= this.#shippedSeq) return;
    const watermark = join(this.#dir, watermarkName);
    // It follows an upload and comes before the deletions that free room.
    await this.reserve.write('record what the store has acknowledged', watermark, 'may-spend', () =>
      writeWatermark(this.#dir, uptoSeq),
    );
    this.#shippedSeq = uptoSeq;
    pruneCommits(this.#commits, uptoSeq);
    // The active segment stays: it is still being appended to.
    while (this.#segments.length > 1) {
      const segment = this.#segments[0] as Segment;
      if (segment.firstSeq + segment.offsets.length - 1 > uptoSeq) break;
      await this.#reader.close(segment);
      // Forgotten only once gone from the disk: a segment whose unlink fails
      // still takes its room, and the next release tries it again.
      await unlinkIfPresent(segment.path);
      this.#segments.shift();
      this.#diskBytes -= segment.size;
    }
  }
}

/**
 * The wall clock can step back (a time sync, a resumed VM): a commit time taken
 * before the step would lie in the future, and its records would count as new,
 * not due to be shipped, for as long as the step.
 */
function monotonicNow(): number {
  return performance.timeOrigin + performance.now();
}

// ---- frames -------------------------------------------------------------------

declare const framed: unique symbol;
/** A record line as the spool writes it; its length is what the line takes in the spool. */
export type SpoolFrame = Buffer & { readonly [framed]: true };

/** Framed by the caller when it needs the size first (to check for room), so the line is measured once. */
export function frameLine(line: string): SpoolFrame {
  const length = Buffer.byteLength(line, 'utf8');
  const frame = Buffer.allocUnsafe(headerBytes + length);
  frame.writeUInt32LE(length, 0);
  frame.write(line, headerBytes, 'utf8');
  frame.writeUInt32LE(frameChecksum(frame, 0, length), 4);
  return frame as SpoolFrame;
}

/** Covers the length too, so a damaged length cannot pass for a shorter record. */
function frameChecksum(buffer: Buffer, at: number, length: number): number {
  const start = at + headerBytes;
  return crc32(buffer.subarray(start, start + length), crc32(buffer.subarray(at, at + 4)));
}

function frameEnd(segment: Segment, index: number): number {
  return segment.offsets[index + 1] ?? segment.size;
}

async function readRecords(
  reader: SegmentReader,
  segment: Segment,
  from: number,
  to: number,
): Promise<SpoolEntry[]> {
  const start = segment.offsets[from] ?? 0;
  const buffer = Buffer.allocUnsafe(frameEnd(segment, to - 1) - start);
  await reader.read(segment, buffer, start);
  const entries: SpoolEntry[] = [];
  for (let index = from; index < to; index++) {
    const at = (segment.offsets[index] ?? 0) - start;
    const length = buffer.readUInt32LE(at);
    if (buffer.readUInt32LE(at + 4) !== frameChecksum(buffer, at, length)) {
      throw new SpoolCorruptError(`record ${segment.firstSeq + index} in ${segment.path} fails its checksum`);
    }
    // A view of the page read, not a copy: nothing else holds the page.
    entries.push({
      seq: segment.firstSeq + index,
      bytes: buffer.subarray(at + headerBytes, at + headerBytes + length),
    });
  }
  return entries;
}

// ---- files --------------------------------------------------------------------

function segmentPath(dir: string, firstSeq: number): string {
  return join(dir, `${String(firstSeq).padStart(20, '0')}.seg`);
}

async function createSegment(dir: string, path: string): Promise<FileHandle> {
  const file = await open(path, 'ax');
  // The new name must survive a crash as surely as the records written into it.
  await syncDir(dir);
  return file;
}

async function writeAll(file: FileHandle, data: Buffer): Promise<void> {
  let written = 0;
  while (written < data.length) {
    const { bytesWritten } = await file.write(data, written, data.length - written);
    written += bytesWritten;
  }
}

/**
 * Cuts off what a failed commit wrote: its callers are refused, so its records
 * must not be found by the next process to open the spool (after a clean close,
 * they would follow the stream's closing manifest). The spool takes nothing
 * more whether this works or not, as a cut that fails leaves the disk as
 * unknown as the write did; the write's error is the one reported.
 */
async function cutBack(file: FileHandle, size: number): Promise<void> {
  await file
    .truncate(size)
    .then(() => file.datasync())
    .catch(() => undefined);
}

async function readExactly(file: FileHandle, buffer: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < buffer.length) {
    const { bytesRead } = await file.read(buffer, done, buffer.length - done, position + done);
    if (bytesRead === 0) throw new SpoolCorruptError('a segment is shorter than its records');
    done += bytesRead;
  }
}

/**
 * The segment being read stays open from one read to the next: the shipper
 * reads a batch in dozens of pages, and opening and closing the file for each
 * cost more than the read itself.
 */
class SegmentReader {
  #segment: Segment | undefined;
  #file: Promise<FileHandle> | undefined;

  async read(segment: Segment, buffer: Buffer, position: number): Promise<void> {
    if (this.#segment !== segment) {
      // Switched with no await between, so a read of another segment meanwhile cannot leave a file open.
      void this.close();
      this.#segment = segment;
      this.#file = open(segment.path, 'r');
    }
    const file = this.#file as Promise<FileHandle>;
    try {
      await readExactly(await file, buffer, position);
    } catch (error) {
      // The next read opens the file afresh rather than trust this handle.
      if (this.#file === file) await this.close();
      throw error;
    }
  }

  /**
   * Closes the open file: any, or only when it is `segment`'s. A read under way
   * on it finishes first. Never fails: the file was only read.
   */
  async close(segment?: Segment): Promise<void> {
    if (segment !== undefined && segment !== this.#segment) return;
    const file = this.#file;
    this.#segment = undefined;
    this.#file = undefined;
    await file?.then((handle) => handle.close()).catch(() => undefined);
  }
}

async function writeWatermark(dir: string, seq: number): Promise<void> {
  await writeFileAtomic(join(dir, watermarkName), `${JSON.stringify({ shippedSeq: seq })}\n`);
}

async function readWatermark(dir: string): Promise<number> {
  let text: string;
  try {
    text = await readFile(join(dir, watermarkName), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return -1;
    throw error;
  }
  let seq: unknown;
  try {
    seq = (JSON.parse(text) as { shippedSeq?: unknown }).shippedSeq;
  } catch {
    seq = undefined;
  }
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < -1) {
    throw new SpoolCorruptError('the shipped watermark is unreadable');
  }
  return seq;
}

// ---- recovery -----------------------------------------------------------------

type OpenState = {
  segments: Segment[];
  commits: Commit[];
  active: FileHandle;
  nextSeq: number;
  shippedSeq: number;
  recovery: SpoolRecovery;
};

/**
 * Nothing on disk changes until every check has passed: an open that is
 * refused leaves the spool as it found it, for the operator and the auditor.
 */
async function recover(options: Required<SpoolOptions>, fresh: boolean): Promise<OpenState> {
  const { dir } = options;
  const shippedSeq = await readWatermark(dir);
  const { segments, commits, torn } = await scanSegments(options);
  const last = segments.at(-1);
  const nextSeq = last ? last.firstSeq + last.offsets.length : shippedSeq + 1;
  const first = segments[0];
  if (nextSeq <= shippedSeq || (first && first.firstSeq > shippedSeq + 1)) {
    throw new SpoolCorruptError('the segments do not cover the records after the shipped watermark');
  }
  await unlink(tempPathOf(join(dir, watermarkName))).catch(() => undefined);
  if (torn) await truncateTail(torn.path, torn.size);
  // Segments fully shipped whose deletion a crash interrupted; the last one is kept for appending.
  while (segments.length > 1 && nextOf(segments[0] as Segment) <= shippedSeq + 1) {
    await unlink((segments.shift() as Segment).path);
  }
  let active: FileHandle;
  if (last && last.size < options.segmentBytes && !(fresh && last.offsets.length > 0)) {
    active = await open(last.path, 'a');
  } else {
    const segment = { firstSeq: nextSeq, path: segmentPath(dir, nextSeq), size: 0, offsets: [] };
    segments.push(segment);
    active = await createSegment(dir, segment.path);
  }
  pruneCommits(commits, shippedSeq);
  const recovery = {
    records: nextSeq - shippedSeq - 1,
    truncatedBytes: torn ? torn.fileSize - torn.size : 0,
  };
  return { segments, commits, active, nextSeq, shippedSeq, recovery };
}

/** The torn tail of the last segment, if any: its whole records end at `size`. */
type TornTail = { path: string; size: number; fileSize: number };

/** Reads every segment, changing none; `segments` hold each one's whole records, a torn tail left out. */
async function scanSegments(
  options: Required<SpoolOptions>,
): Promise<{ segments: Segment[]; commits: Commit[]; torn: TornTail | undefined }> {
  const names = (await readdir(options.dir)).filter((name) => segmentPattern.test(name)).sort();
  const segments: Segment[] = [];
  const commits: Commit[] = [];
  let torn: TornTail | undefined;
  for (const [index, name] of names.entries()) {
    const firstSeq = Number(segmentPattern.exec(name)?.[1]);
    const path = join(options.dir, name);
    const scan = await scanSegment(path);
    if (scan.size !== scan.fileSize) {
      // Only the last write can be torn, and nothing whole follows a torn write.
      if (index !== names.length - 1 || scan.wholeAfter > 0) throw damagedSegment(name, scan);
      torn = { path, size: scan.size, fileSize: scan.fileSize };
    }
    const previous = segments.at(-1);
    if (previous && nextOf(previous) !== firstSeq) {
      throw new SpoolCorruptError(`${name} does not follow the segment before it`);
    }
    segments.push({ firstSeq, path, size: scan.size, offsets: scan.offsets });
    // The last write's time is on the wall clock: its age there, counted back on the spool's clock.
    commits.push({ seq: firstSeq, time: options.now() - Math.max(0, Date.now() - scan.modified) });
  }
  return { segments, commits, torn };
}

/**
 * Records after the damage may have been answered: cutting them would lose
 * evidence without a trace, so the open is refused and the operator keeps the
 * spool for the auditor.
 */
function damagedSegment(name: string, scan: Scan): SpoolCorruptError {
  return new SpoolCorruptError(
    `${name} is damaged at byte ${scan.size} of ${scan.fileSize}, with ${scan.wholeAfter} whole records after the damage: ` +
      'not a write a crash interrupted, so nothing is cut; stop the pod, move the contents of its spool volume aside ' +
      '(keep them for the auditor) and start it again',
  );
}

/**
 * Forgets every other commit time, the first kept: the records of one forgotten
 * take the time of the commit before theirs, so they read older than they are.
 * The oldest unshipped record's age stays exact, and a batch is cut early, never late.
 */
function thinCommits(commits: Commit[]): void {
  let kept = 0;
  for (let index = 0; index < commits.length; index += 2) commits[kept++] = commits[index] as Commit;
  commits.length = kept;
}

/** Keeps the commit holding the oldest unshipped record, and those after it. */
function pruneCommits(commits: Commit[], shippedSeq: number): void {
  while ((commits[1]?.seq ?? Number.POSITIVE_INFINITY) <= shippedSeq + 1) commits.shift();
}

function nextOf(segment: Segment): number {
  return segment.firstSeq + segment.offsets.length;
}

/** `wholeAfter`: whole frames with good checksums found past `size`, which ends the first run of them. */
type Scan = { offsets: number[]; size: number; fileSize: number; modified: number; wholeAfter: number };

/** Walks the frames of a segment; `size` ends at the last whole frame with a good checksum. */
async function scanSegment(path: string): Promise<Scan> {
  const file = await open(path, 'r');
  try {
    const { size: fileSize, mtimeMs } = await file.stat();
    const frames = new FrameWindow(file, fileSize);
    const { offsets, end } = await frameRun(frames, 0);
    const wholeAfter = end < fileSize ? await wholeFramesAfter(frames, end) : 0;
    return { offsets, size: end, fileSize, modified: mtimeMs, wholeAfter };
  } finally {
    await file.close();
  }
}

/** The frames that follow one another from `from`, and where the run of them ends. */
async function frameRun(frames: FrameWindow, from: number): Promise<{ offsets: number[]; end: number }> {
  const offsets: number[] = [];
  let end = from;
  for (let bytes = await frames.frameAt(end); bytes !== undefined; bytes = await frames.frameAt(end)) {
    offsets.push(end);
    end += bytes;
  }
  return { offsets, end };
}

/**
 * Counts the whole frames past the bad point `from`, looked for at every byte:
 * damage can leave a wrong length to skip by. A crash tears only the last
 * write, so its torn frame is followed by the file's end, zeros or garbage,
 * which pass no checksum (zeros fail it: the checksum of a zero length is not
 * zero). Whole frames after it would take a disk that wrote one write's pages
 * out of order; they cannot be told from answered records after damage, so
 * they are refused too, not cut.
 */
async function wholeFramesAfter(frames: FrameWindow, from: number): Promise<number> {
  let count = 0;
  for (let at = await frames.nextPossibleFrame(from + 1); at !== undefined; ) {
    const run = await frameRun(frames, at);
    count += run.offsets.length;
    at = await frames.nextPossibleFrame(run.end + 1);
  }
  return count;
}

/** Reads a segment through a window of at least `readChunkBytes`, so a scan reads each byte about once. */
class FrameWindow {
  readonly fileSize: number;
  readonly #file: FileHandle;
  #window = Buffer.alloc(0);
  #windowStart = 0;

  constructor(file: FileHandle, fileSize: number) {
    this.#file = file;
    this.fileSize = fileSize;
  }

  /** The bytes the whole frame at `at` takes, when there is one with a good checksum. */
  async frameAt(at: number): Promise<number | undefined> {
    const header = await this.#bytesAt(at, headerBytes);
    if (!header) return undefined;
    const length = header.readUInt32LE(0);
    const frame = await this.#bytesAt(at, headerBytes + length);
    if (!frame || frame.readUInt32LE(4) !== frameChecksum(frame, 0, length)) return undefined;
    return headerBytes + length;
  }

  /**
   * The first offset from `from` on where a frame may start: its length fits
   * the file and its line reads as a JSON object, as every record does. Looking
   * past damage, garbage often reads as a length that fits: each such spot
   * then costs a byte or two, not a checksum (and a window) over up to the
   * whole segment, and the bytes are walked without a wait between them.
   */
  async nextPossibleFrame(from: number): Promise<number | undefined> {
    for (let at = from; at + headerBytes + 1 <= this.fileSize; at++) {
      if (at < this.#windowStart || at + headerBytes + 1 > this.#windowStart + this.#window.length) {
        await this.#bytesAt(at, headerBytes + 1);
      }
      const index = at - this.#windowStart;
      const length = this.#window.readUInt32LE(index);
      if (length < 2 || at + headerBytes + length > this.fileSize) continue;
      if (this.#window[index + headerBytes] !== openBrace) continue;
      if ((await this.#byteAt(at + headerBytes + length - 1)) === closeBrace) return at;
    }
    return undefined;
  }

  async #byteAt(at: number): Promise<number> {
    if (at >= this.#windowStart && at < this.#windowStart + this.#window.length) {
      return this.#window[at - this.#windowStart] as number;
    }
    const one = Buffer.alloc(1);
    await readExactly(this.#file, one, at);
    return one[0] as number;
  }

  async #bytesAt(at: number, length: number): Promise<Buffer | undefined> {
    if (at + length > this.fileSize) return undefined;
    if (at < this.#windowStart || at + length > this.#windowStart + this.#window.length) {
      this.#window = Buffer.allocUnsafe(Math.min(Math.max(length, readChunkBytes), this.fileSize - at));
      this.#windowStart = at;
      await readExactly(this.#file, this.#window, at);
    }
    return this.#window.subarray(at - this.#windowStart, at - this.#windowStart + length);
  }
}

async function truncateTail(path: string, size: number): Promise<void> {
  const file = await open(path, 'r+');
  try {
    await file.truncate(size);
    await file.sync();
  } finally {
    await file.close();
  }
}

async function unlinkIfPresent(path: string): Promise<void> {
  await unlink(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT') throw error;
  });
}
