// Ships the spool to an evidence store. It cuts durable records into batches
// (gzip NDJSON of one stream's consecutive records) by count, size or age, has
// each described by a signed manifest chained to the one before, and uploads
// the batch, then its manifest. Only once both are acknowledged does the spool
// let the records go. Failures back off with jitter and shipping resumes by
// itself; nothing is ever dropped, so a store that stays away fills the spool
// and the request path refuses new requests.
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import {
  BatchBuilder,
  batchGzipOptions,
  buildBatchManifest,
  buildClose,
  type EncodedBatch,
  sha256Hex,
  storeManifest,
  streamId,
} from '@veil/core';
import { type BackoffOptions, backoffDelay, defaultBackoff } from './backoff.ts';
import type { ReserveUse } from './reserve.ts';
import type { Spool } from './spool.ts';
import {
  AuditStateError,
  type OutboxItem,
  type ShipState,
  type StateData,
  type StreamRecord,
} from './state.ts';
import {
  EvidenceConflictError,
  EvidenceNotLockedError,
  type EvidenceStore,
  EvidenceStoreSetupError,
  retentionMarginMs,
  type StoreSetupProblem,
} from './store.ts';

export type BatchSettings = { maxRecords: number; maxBytes: number; maxAgeSeconds: number };

/**
 * Read before each batch and upload, so a policy change applies to the next
 * one. A batch keeps the retention it was cut with, and no object of a stream
 * is locked shorter than the longest retention its batches were cut with.
 */
export type ShippingSettings = {
  batch: BatchSettings;
  retentionMs: number;
  /** False while no policy is loaded: the last retention in force is kept, not `retentionMs`. */
  retentionKnown?: boolean;
};

export type ShipperOptions = {
  spool: Spool;
  state: ShipState;
  store: EvidenceStore;
  settings: () => ShippingSettings;
  /** The stream this process records into; closed by `close()`. */
  stream: string;
  /** Spool seqs below this were written by an earlier process: overdue, shipped at once. */
  leftoverEnd: number;
  /** The wall clock, for manifest times and lock retention; how long records wait is the spool's to tell. */
  now?: () => number;
  backoff?: BackoffOptions;
  log?: (message: string) => void;
};

export type ShipperStats = {
  shippedRecords: number;
  shippedBatches: number;
  /** Consecutive failed attempts; 0 while shipping works. */
  failures: number;
  /**
   * The last attempt found a key holding other bytes. Evidence is never
   * replaced, so retrying cannot end this, unlike an outage: it needs an operator.
   */
  conflict: boolean;
  /**
   * The last attempt found its key holding these bytes without the COMPLIANCE
   * lock asked for (stored by a server that refused the lock): shipping does
   * not go past it until an operator locks or removes it.
   */
  notLocked: boolean;
  /** What the store's set-up lacks, when the last attempt was refused for it; shipping resumes once it is fixed. */
  misconfigured: StoreSetupProblem | undefined;
};

type Sleeper = { wake: () => void; byNotify: boolean };

const gzipAsync = promisify(gzip);

/**
 * Compresses a batch's NDJSON on the thread pool. zlib hands its output back a
 * chunk at a time, each chunk a trip through this thread's event loop: at its
 * default 16 KiB an 8 MiB batch took about 30 ms of this thread, at 1 MiB about
 * 5. Half the input is more than level 1 makes of records, so a small batch
 * gets one chunk and is not given a megabyte it does not use.
 */
function gzipBatch(text: Buffer): Promise<Buffer> {
  const chunkSize = Math.min(1024 * 1024, Math.max(16 * 1024, text.length >> 1));
  return gzipAsync(text, { ...batchGzipOptions, chunkSize });
}

/**
 * Records read from the spool at a time while cutting a batch. The request
 * path shares this thread: between pages it runs, so a batch of thousands of
 * records never holds a request up for more than one page's work.
 */
const cutPageRecords = 256;

export class Shipper {
  readonly #spool: Spool;
  readonly #state: ShipState;
  readonly #store: EvidenceStore;
  readonly #settings: () => ShippingSettings;
  readonly #stream: string;
  readonly #leftoverEnd: number;
  readonly #now: () => number;
  readonly #backoff: BackoffOptions;
  readonly #log: (message: string) => void;
  readonly #stop = new AbortController();
  readonly #stats: ShipperStats = {
    shippedRecords: 0,
    shippedBatches: 0,
    failures: 0,
    conflict: false,
    notLocked: false,
    misconfigured: undefined,
  };
  /** What the last failed attempt failed of, so that a new error is logged when it comes. */
  #lastError: string | undefined;
  #loop: Promise<void> | undefined;
  /**
   * The next batch, read and compressed while the one before uploads (and kept
   * in memory while that upload is retried); nothing is committed for it yet.
   */
  #next: { from: number; batch: Promise<CutBatch> } | undefined;
  #sleeper: Sleeper | undefined;
  #closing = false;
  /**
   * The longest retention in force while this process's records were made
   * durable: during an outage nothing is cut, and the policy may change before it ends.
   */
  #longestSeenMs = 0;

  constructor(options: ShipperOptions) {
    this.#spool = options.spool;
    this.#state = options.state;
    this.#store = options.store;
    this.#settings = options.settings;
    this.#stream = options.stream;
    this.#leftoverEnd = options.leftoverEnd;
    this.#now = options.now ?? Date.now;
    this.#backoff = options.backoff ?? defaultBackoff;
    this.#log = options.log ?? (() => undefined);
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  /** New durable records: a batch may be due. */
  notify(): void {
    this.#longestSeenMs = Math.max(this.#longestSeenMs, this.#policyRetentionMs());
    if (this.#sleeper?.byNotify) this.#sleeper.wake();
  }

  stats(): ShipperStats {
    return { ...this.#stats };
  }

  /** The seq of the first record of this process's stream the store has not acknowledged. */
  firstUnshippedSeq(): number {
    const outbox = this.#state.data.outbox;
    const batch = outbox.find(
      (item) => item.manifest.stream === this.#stream && item.manifest.kind === 'batch',
    );
    if (batch?.manifest.kind === 'batch') return batch.manifest.batch.firstSeq;
    return this.#state.stream(this.#stream)?.nextRecordSeq ?? 0;
  }

  /**
   * Cuts every remaining record into batches, closes this process's stream and
   * uploads all, giving up after `graceMs`. True when everything was shipped;
   * what was not stays in the spool directory for the next process to ship.
   * The sink must take no more records by now.
   */
  async close(graceMs: number): Promise<boolean> {
    this.#closing = true;
    this.start();
    const timer = setTimeout(() => this.#stop.abort(), graceMs);
    this.#sleeper?.wake();
    try {
      await this.#loop;
    } finally {
      clearTimeout(timer);
      this.#stop.abort();
      // It reads the spool, which the caller closes next.
      await this.#next?.batch.catch(() => undefined);
    }
    return this.#state.data.outbox.length === 0 && this.#uncut() === 0;
  }

  async #run(): Promise<void> {
    while (!this.#stop.signal.aborted) {
      try {
        const closing = this.#closing;
        const step = await this.#step();
        if (step === 'shipped') this.#succeeded();
        if (step !== 'idle') continue;
        if (closing) return;
        // `close()` came during a step that did no closing work: the next step does it.
        if (this.#closing) continue;
        await this.#sleep(this.#idleMs(), true);
      } catch (error) {
        if (this.#stop.signal.aborted) return;
        this.#failed(error);
        await this.#sleep(backoffDelay(this.#stats.failures, this.#backoff), false);
      }
    }
  }

  #succeeded(): void {
    const stats = this.#stats;
    if (stats.failures > 0) this.#log(`audit shipping resumed after ${inARow(stats.failures)}`);
    stats.failures = 0;
    stats.conflict = false;
    stats.notLocked = false;
    stats.misconfigured = undefined;
    this.#lastError = undefined;
  }

  /**
   * Counts the failure and logs it when it is the first, another error than the
   * one before, or every 20th in a row: an error that lasts is not logged at
   * every retry, one that changes always is.
   */
  #failed(error: unknown): void {
    const stats = this.#stats;
    stats.failures += 1;
    stats.conflict = error instanceof EvidenceConflictError;
    stats.notLocked = error instanceof EvidenceNotLockedError;
    stats.misconfigured = error instanceof EvidenceStoreSetupError ? error.problem : undefined;
    const signature = errorSignature(error);
    const changed = signature !== this.#lastError;
    this.#lastError = signature;
    if (!changed && stats.failures % 20 !== 0) return;
    this.#log(
      `audit shipping to ${this.#store.description} failed (${inARow(stats.failures)}): ${describe(error)}${hint(error)}`,
    );
  }

  /**
   * One unit of work: 'idle' when there is none now. Only an upload is
   * 'shipped': cutting and closing are local, so they end no outage.
   */
  async #step(): Promise<Step> {
    // Closing cuts everything first: the closing manifest can then join the outbox
    // even while the store is away, and the next process uploads it.
    if (this.#closing && ((await this.#cut(true)) || (await this.#closeStream()))) return 'local';
    const item = this.#state.data.outbox[0];
    if (item) {
      // The upload mostly waits on the store: the next batch's reading and compression fit in that wait.
      this.#cutAhead();
      await this.#upload(item);
      return 'shipped';
    }
    return !this.#closing && (await this.#cut(false)) ? 'local' : 'idle';
  }

  #uncut(): number {
    return this.#spool.stats().nextSeq - this.#state.data.cutSeq;
  }

  #due(from: number, batch: BatchSettings): boolean {
    if (from < this.#leftoverEnd) return true;
    if (this.#uncut() >= batch.maxRecords) return true;
    if (this.#spool.bytesFrom(from) >= batch.maxBytes) return true;
    const age = this.#spool.committedAgeMs(from);
    // A clock that went back tells nothing of the age: better a batch early than held for the step.
    return age !== undefined && (age < 0 || age >= batch.maxAgeSeconds * 1000);
  }

  /** Until the oldest uncut record is due by age; a notify comes sooner when count or size is reached. */
  #idleMs(): number | undefined {
    const age = this.#spool.committedAgeMs(this.#state.data.cutSeq);
    if (age === undefined) return undefined;
    return age < 0 ? 0 : Math.max(0, this.#settings().batch.maxAgeSeconds * 1000 - age);
  }

  async #cut(force: boolean): Promise<boolean> {
    const data = this.#state.data;
    const from = data.cutSeq;
    if (this.#uncut() <= 0) return false;
    const { batch: settings } = this.#settings();
    if (!force && !this.#due(from, settings)) return false;
    const ahead = this.#next?.from === from ? this.#next.batch : undefined;
    this.#next = undefined;
    const { run, batch } = await (ahead ?? this.#compress(from, this.#fitting(settings)));
    const use = this.#cutUse();
    const stream = this.#state.stream(run.stream);
    if (!stream) throw new AuditStateError(`the spool holds records of ${run.stream}, a stream with no key`);
    const { firstSeq, lastSeq } = batch.content;
    if (stream.head.kind === 'close' && firstSeq >= stream.nextRecordSeq) {
      // A close comes only once every record acknowledged before it is cut: these
      // were refused (a failed write whose bytes could not be cut off). The signed
      // close ends the stream before them, and holding them would stop all shipping.
      this.#log(
        `audit: dropped records ${firstSeq} to ${lastSeq} of ${run.stream}, found after its closing manifest: refused when written, never acknowledged`,
      );
      await this.#state.commit({ ...data, cutSeq: run.lastSpoolSeq + 1 }, 'skip records dropped', use);
      // Nothing is left to upload before them: released now, or the spool would
      // count them as waiting (and log them at each start) until a later batch ships.
      if (data.outbox.length === 0) await this.#spool.release(run.lastSpoolSeq);
      return true;
    }
    if (firstSeq !== stream.nextRecordSeq) {
      throw new AuditStateError(`${run.stream} continues at record ${firstSeq}, not ${stream.nextRecordSeq}`);
    }
    const retentionMs = this.#retentionMs(stream);
    const manifest = buildBatchManifest({
      stream: stream.ref,
      signingKey: this.#state.signingKey(stream),
      createdAt: new Date(this.#now()),
      prev: storeManifest(stream.head),
      batch,
    });
    const file = `${batch.content.sha256}.ndjson.gz`;
    await this.#state.writeBatch(file, batch.bytes, use);
    const next = {
      ...stream,
      head: manifest.manifest,
      nextRecordSeq: batch.content.lastSeq + 1,
      retentionMs,
    };
    const item = { manifest: manifest.manifest, batch: { file, spoolUpto: run.lastSpoolSeq }, retentionMs };
    await this.#state.commit(
      {
        ...data,
        cutSeq: run.lastSpoolSeq + 1,
        streams: data.streams.map((s) => (s === stream ? next : s)),
        outbox: [...data.outbox, item],
        retentionMs: this.#policyRetentionMs(),
      },
      'queue a batch for upload',
      use,
    );
    return true;
  }

  /** The policy's retention; while none is loaded, the last one in force, before the default. */
  #policyRetentionMs(): number {
    const settings = this.#settings();
    if (settings.retentionKnown === false) return this.#state.data.retentionMs ?? settings.retentionMs;
    return settings.retentionMs;
  }

  /** What a batch of `stream` is cut with: a policy that lowers the retention shortens none of the stream's locks. */
  #retentionMs(stream: StreamRecord): number {
    const seen = streamId(stream.ref) === this.#stream ? this.#longestSeenMs : 0;
    return Math.max(this.#policyRetentionMs(), stream.retentionMs ?? 0, seen);
  }

  /** For an item cut by an earlier version, or a genesis or close manifest, the stream's as it stands. */
  #uploadRetentionMs(item: OutboxItem): number {
    const stream = this.#state.stream(item.manifest.stream);
    return Math.max(item.retentionMs ?? 0, stream ? this.#retentionMs(stream) : this.#policyRetentionMs());
  }

  /**
   * A cut adds to the volume. It may give up the reserve only when the store
   * took everything queued before it, so its batch can go at once and free
   * the room; with the store away, the reserve is kept for the next process's start.
   */
  #cutUse(): ReserveUse {
    return this.#state.data.outbox.length === 0 ? 'may-spend' : 'keep';
  }

  /** With the reserve given up, batches small enough that their copy fits in the room it left. */
  #fitting(settings: BatchSettings): BatchSettings {
    const reserve = this.#spool.reserve;
    if (reserve.held) return settings;
    return { ...settings, maxBytes: Math.min(settings.maxBytes, Math.floor(reserve.bytes / 2)) };
  }

  /** Starts on the next batch when one is due; `#cut` takes it if it still starts where cutting stands. */
  #cutAhead(): void {
    const from = this.#state.data.cutSeq;
    if (this.#next?.from === from || this.#uncut() <= 0) return;
    const { batch: settings } = this.#settings();
    if (!this.#due(from, settings)) return;
    const batch = this.#compress(from, this.#fitting(settings));
    // Awaited by `#cut`, or by `close`; until then a failure must not count as unhandled.
    batch.catch(() => undefined);
    this.#next = { from, batch };
  }

  /** The batch from spool seq `from`, compressed; nothing is written or committed. */
  async #compress(from: number, settings: BatchSettings): Promise<CutBatch> {
    const run = await this.#collect(from, settings);
    // Compressed off this thread's event loop, for the same reason as the paging.
    return { run, batch: run.builder.finish(await gzipBatch(run.builder.text())) };
  }

  /**
   * The leading records from spool seq `from` of one stream, within the batch
   * limits. Lines are not validated again here: `encodeRecordLine` did so before
   * the spool took them, and the spool refuses a line that fails its frame
   * checksum (see core's record envelope for what is still checked).
   */
  async #collect(from: number, limits: BatchSettings): Promise<StreamRun> {
    const builder = new BatchBuilder();
    let bytes = 0;
    let next = from;
    for (;;) {
      const wanted = Math.min(cutPageRecords, limits.maxRecords - builder.records);
      if (wanted <= 0) return this.#streamRun(builder, next);
      const page = await this.#spool.readFrom(next, wanted, limits.maxBytes - bytes);
      for (const entry of page) {
        const size = entry.bytes.length;
        // The first record always goes, whatever its size: it could go in no batch otherwise.
        if (builder.records > 0 && bytes + size > limits.maxBytes) return this.#streamRun(builder, next);
        if (!builder.add(entry.bytes)) return this.#streamRun(builder, next);
        bytes += size;
        next = entry.seq + 1;
      }
      if (page.length < wanted) return this.#streamRun(builder, next);
    }
  }

  #streamRun(builder: BatchBuilder, next: number): StreamRun {
    const stream = builder.stream;
    if (stream === undefined) throw new AuditStateError('the spool returned no record to cut');
    return { stream, builder, lastSpoolSeq: next - 1 };
  }

  /** Queues this process's closing manifest once all its records are cut; false when done already. */
  async #closeStream(): Promise<boolean> {
    const data = this.#state.data;
    const stream = this.#state.stream(this.#stream);
    if (!stream || stream.head.kind === 'close') return false;
    const close = buildClose({
      stream: stream.ref,
      signingKey: this.#state.signingKey(stream),
      createdAt: new Date(this.#now()),
      prev: storeManifest(stream.head),
      lastSeq: stream.nextRecordSeq > 0 ? stream.nextRecordSeq - 1 : null,
    });
    await this.#state.commit(
      {
        ...data,
        streams: data.streams.map((s) =>
          s === stream ? { ...stream, head: close.manifest, retentionMs: this.#retentionMs(stream) } : s,
        ),
        outbox: [...data.outbox, { manifest: close.manifest }],
        retentionMs: this.#policyRetentionMs(),
      },
      "queue this process's closing manifest",
      'keep',
    );
    return true;
  }

  async #upload(item: OutboxItem): Promise<void> {
    const signal = this.#stop.signal;
    const retainUntil = new Date(this.#now() + this.#uploadRetentionMs(item) + retentionMarginMs);
    const manifest = storeManifest(item.manifest);
    const described = item.manifest.kind === 'batch' ? item.manifest.batch : undefined;
    if (item.batch && described) {
      const bytes = await readFile(this.#state.batchPath(item.batch.file));
      if (sha256Hex(bytes) !== described.sha256) {
        throw new AuditStateError(`the outbox copy of ${described.key} is damaged`);
      }
      await this.#store.put({ key: described.key, bytes, sha256: described.sha256, retainUntil }, signal);
    }
    await this.#store.put(
      { key: manifest.key, bytes: manifest.bytes, sha256: manifest.sha256, retainUntil },
      signal,
    );
    const data = this.#state.data;
    // The last item out: every record cut so far is shipped, or was dropped after
    // its stream's close by a process that stopped before anything else shipped.
    const shippedUpto = data.outbox.length === 1 ? data.cutSeq - 1 : item.batch?.spoolUpto;
    if (shippedUpto !== undefined && shippedUpto >= 0) await this.#spool.release(shippedUpto);
    await this.#state.commit(
      { ...data, streams: this.#liveStreams(data), outbox: data.outbox.slice(1) },
      'record an upload in the shipper state',
      'may-spend',
    );
    if (item.batch) await this.#state.removeBatch(item.batch.file);
    await this.#spool.reserve.refill();
    if (described) {
      this.#stats.shippedRecords += described.records;
      this.#stats.shippedBatches += 1;
    }
  }

  /** Streams of earlier processes are forgotten once nothing of theirs is left to ship. */
  #liveStreams(data: StateData): StateData['streams'] {
    const leftoversCut = data.cutSeq >= this.#leftoverEnd;
    const pending = new Set(data.outbox.slice(1).map((item) => item.manifest.stream));
    return data.streams.filter((stream) => {
      const id = streamId(stream.ref);
      return id === this.#stream || pending.has(id) || !leftoversCut;
    });
  }

  #sleep(ms: number | undefined, byNotify: boolean): Promise<void> {
    return new Promise<void>((resolve) => {
      if (this.#stop.signal.aborted) {
        resolve();
        return;
      }
      const timer = ms === undefined ? undefined : setTimeout(done, ms);
      const signal = this.#stop.signal;
      function done(): void {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      }
      this.#sleeper = { wake: done, byNotify };
      signal.addEventListener('abort', done, { once: true });
    }).finally(() => {
      this.#sleeper = undefined;
    });
  }
}

const seeGuide = '(see "When a part is down" in the operations guide)';

const setupHints: Record<StoreSetupProblem, string> = {
  'no-object-lock': 'enable Object Lock on the bucket',
  'no-bucket': 'check the bucket name, or create the bucket with Object Lock',
  credentials:
    'check the credentials, and that they may s3:PutObject, s3:PutObjectRetention, s3:GetObject and s3:GetObjectRetention on the evidence keys',
};

/** What an operator must do, for errors that retrying alone cannot end. */
function hint(error: unknown): string {
  if (error instanceof EvidenceConflictError) {
    return `; evidence is never replaced, so retrying cannot resolve this ${seeGuide}`;
  }
  if (error instanceof EvidenceNotLockedError) {
    return `; a configuration error: the object is no evidence until it is locked. Enable Object Lock on the bucket and put a COMPLIANCE retention on that object (or, when it is locked, let the credentials s3:GetObjectRetention); shipping retries it meanwhile ${seeGuide}`;
  }
  if (error instanceof EvidenceStoreSetupError) {
    return `; a configuration error (${error.problem}): ${setupHints[error.problem]}; shipping retries until it is fixed ${seeGuide}`;
  }
  return '';
}

/** The same words in failure and resumption lines, so their counts read as one count. */
function inARow(failures: number): string {
  return `${failures} ${failures === 1 ? 'failure' : 'failures'} in a row`;
}

/** Tells errors apart by kind, not by message: a message may carry a request id or a time. */
function errorSignature(error: unknown): string {
  if (!(error instanceof Error)) return 'unknown';
  const code = (error as { code?: unknown }).code;
  const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  return `${error.name}/${typeof code === 'string' ? code : ''}/${status ?? ''}`;
}

type Step = 'shipped' | 'local' | 'idle';
type StreamRun = { stream: string; builder: BatchBuilder; lastSpoolSeq: number };
type CutBatch = { run: StreamRun; batch: EncodedBatch };

function describe(error: unknown): string {
  if (!(error instanceof Error)) return 'unknown error';
  const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  return `${error.name}${status ? ` (HTTP ${status})` : ''}: ${error.message}`.slice(0, 300);
}
