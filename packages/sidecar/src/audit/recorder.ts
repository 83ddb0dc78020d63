// The audit evidence pipeline of one sidecar process: the durable sink the
// request path appends to, and the shipper that turns the spool into signed
// batches in the evidence store. Opening it registers this process's stream
// (genesis manifest queued before any record); records an earlier process left
// in the spool are shipped under their own streams, with the keys kept for them.
import { join } from 'node:path';
import {
  buildGenesis,
  DEFAULT_SPOOL_CAPACITY_BYTES,
  exportSigningKey,
  generateSigningKey,
  type RecordEnvelope,
  readEnvelope,
  type SigningKey,
  streamId,
} from '@veil/core';
import type { BackoffOptions } from './backoff.ts';
import { DurableSink } from './durable.ts';
import { Shipper, type ShipperStats, type ShippingSettings } from './shipper.ts';
import type { AppendUntil, AuditDraft, AuditSink } from './sink.ts';
import { defaultSegmentBytes, Spool } from './spool.ts';
import { AuditStateError, newStreamRecord, ShipState } from './state.ts';
import type { EvidenceStore } from './store.ts';
import { RecordEncoder, type StreamIdentity, streamRef } from './stream.ts';

/** A line for the sidecar's log; an `error` is evidence at risk, for an operator to act on. */
export type AuditLog = (message: string, level?: 'warn' | 'error') => void;

export type AuditRecorderOptions = {
  spoolDir: string;
  capacityBytes?: number;
  identity: StreamIdentity;
  /** Registered by this stream's genesis manifest; generated when absent. */
  signingKey?: SigningKey;
  store: EvidenceStore;
  settings: () => ShippingSettings;
  /** How long `close()` may take to ship what is left and close the stream. */
  closeGraceMs: number;
  backoff?: BackoffOptions;
  log?: AuditLog;
  /** What the spool measures how long records wait by; one that never steps back by default. */
  spoolClock?: () => number;
};

export type AuditStats = ShipperStats & {
  stream: string;
  spoolBytes: number;
  /** Durable records the store has not acknowledged yet. */
  recordsWaiting: number;
  oldestUnshippedAgeSeconds: number;
};

const stateDirName = 'shipper';
const maxReserveBytes = 8 * 1024 * 1024;
const scanPageRecords = 10_000;

export class AuditRecorder implements AuditSink {
  readonly #spool: Spool;
  readonly #sink: DurableSink;
  readonly #shipper: Shipper;
  readonly #store: EvidenceStore;
  readonly #closeGraceMs: number;
  readonly #log: AuditLog;
  /** The RFC 7638 thumbprint of the key the stream's manifests are signed with. */
  readonly keyId: string;
  #closing: Promise<void> | undefined;

  private constructor(parts: {
    spool: Spool;
    sink: DurableSink;
    shipper: Shipper;
    store: EvidenceStore;
    closeGraceMs: number;
    log: AuditLog;
    keyId: string;
  }) {
    this.keyId = parts.keyId;
    this.#spool = parts.spool;
    this.#sink = parts.sink;
    this.#shipper = parts.shipper;
    this.#store = parts.store;
    this.#closeGraceMs = parts.closeGraceMs;
    this.#log = parts.log;
  }

  static async open(options: AuditRecorderOptions): Promise<AuditRecorder> {
    const capacityBytes = options.capacityBytes ?? DEFAULT_SPOOL_CAPACITY_BYTES;
    // The active segment is never released: small ones let a small spool drain.
    const segmentBytes = Math.min(defaultSegmentBytes, Math.floor(capacityBytes / 8));
    const spool = await Spool.open({
      dir: options.spoolDir,
      capacityBytes,
      segmentBytes,
      now: options.spoolClock,
    });
    try {
      return await AuditRecorder.#start(spool, capacityBytes, options);
    } catch (error) {
      await spool.close();
      throw error;
    }
  }

  static async #start(
    spool: Spool,
    capacityBytes: number,
    options: AuditRecorderOptions,
  ): Promise<AuditRecorder> {
    const log = options.log ?? (() => undefined);
    const { nextSeq, shippedSeq } = spool.stats();
    const state = await ShipState.open(join(options.spoolDir, stateDirName), shippedSeq + 1, spool.reserve);
    await checkStateMatchesSpool(state, spool);
    const ref = streamRef(options.identity);
    const stream = streamId(ref);
    const { nextRecordSeq, keyId } = await openStream(state, spool, options, stream);
    const shipper = new Shipper({
      spool,
      state,
      store: options.store,
      settings: options.settings,
      stream,
      leftoverEnd: nextSeq,
      backoff: options.backoff,
      log,
    });
    const sink = new DurableSink({
      spool,
      encoder: new RecordEncoder(options.identity),
      nextSeq: nextRecordSeq,
      reserveBytes: Math.min(maxReserveBytes, Math.floor(capacityBytes / 8)),
      onDurable: () => shipper.notify(),
    });
    if (spool.recovery.records > 0) {
      log(`audit spool: ${spool.recovery.records} records of earlier processes to ship`);
    }
    if (spool.recovery.truncatedBytes > 0) log(tornTail(spool.recovery.truncatedBytes));
    shipper.start();
    return new AuditRecorder({
      spool,
      sink,
      shipper,
      store: options.store,
      closeGraceMs: options.closeGraceMs,
      log,
      keyId,
    });
  }

  get stream(): string {
    return this.#sink.stream;
  }

  accepting(): boolean {
    return this.#sink.accepting();
  }

  failed(): boolean {
    return this.#sink.failed();
  }

  append(draft: AuditDraft, until?: AppendUntil): Promise<void> {
    return this.#sink.append(draft, until);
  }

  stats(): AuditStats {
    const spool = this.#spool.stats();
    return {
      ...this.#shipper.stats(),
      stream: this.stream,
      spoolBytes: spool.bytes,
      recordsWaiting: spool.waiting,
      oldestUnshippedAgeSeconds: (spool.oldestUnshippedAgeMs ?? 0) / 1000,
    };
  }

  /** Takes no more records, ships what is left and closes the stream within the grace period. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    await this.#sink.close();
    try {
      const complete = await this.#shipper.close(this.#closeGraceMs);
      if (!complete) this.#log(this.#leftUnshipped(), 'error');
    } finally {
      await this.#spool.close();
      this.#store.close();
    }
  }

  /**
   * What a close that ran out of time left in the spool. A container restart
   * finds it there and ships it first; a pod being deleted takes its emptyDir,
   * and it, along. Nothing here tells the two apart, so both are said.
   */
  #leftUnshipped(): string {
    const waiting = this.#spool.stats().waiting;
    const first = this.#shipper.firstUnshippedSeq();
    // Records refused when written took a seq but were never answered: not counted.
    const last = this.#sink.lastDurableSeq;
    // With every record shipped, what is left is manifests (the closing one, at least).
    const left = waiting > 0 ? `${waiting} records` : 'the last manifests (no records)';
    const own = first <= last ? ` (records ${first} to ${last} of stream ${this.stream} among them)` : '';
    return (
      `audit: ${left} not shipped to ${this.#store.description} within the grace period${own}: ` +
      'kept in the spool for the next process if only the container restarts, but lost if the pod itself is being deleted ' +
      '(the sidecar cannot tell which; see "When a part is down" in the operations guide)'
    );
  }
}

/**
 * A write a crash interrupted was never acknowledged, so cutting it loses
 * nothing answered; but the same cut follows damage to the last records on
 * disk (damage with whole records after it is refused, not cut), which only
 * the operator can tell apart: it is said, not left silent.
 */
function tornTail(bytes: number): string {
  return `audit spool: cut ${bytes} bytes off the end of the last segment, from the first record that fails its checksum, with no whole record after it: a write a crash interrupted (never acknowledged), unless the disk damaged the last records`;
}

async function checkStateMatchesSpool(state: ShipState, spool: Spool): Promise<void> {
  const { nextSeq, shippedSeq, waiting } = spool.stats();
  if (!state.found && waiting > 0) {
    throw new AuditStateError(`the spool holds ${waiting} unshipped records but no shipper state`);
  }
  const { cutSeq, outbox } = state.data;
  if (cutSeq <= shippedSeq || cutSeq > nextSeq) {
    throw new AuditStateError(`the shipper state (cut at ${cutSeq}) does not match the spool`);
  }
  const batchUpto = outbox.findLast((item) => item.batch)?.batch?.spoolUpto ?? -1;
  if (batchUpto >= cutSeq) {
    throw new AuditStateError(
      `the shipper state (cut at ${cutSeq}) lists a batch up to spool seq ${batchUpto}, past its cut`,
    );
  }
  await checkOnlyDroppedSkipped(state, spool, Math.max(shippedSeq, batchUpto) + 1, cutSeq);
}

/**
 * Records after the last one shipped or batched and before the cut can only be
 * records the shipper dropped, found after their stream's closing manifest;
 * any other is an answered record the state would skip. There are none but
 * such drops, so this reads nothing in the usual case.
 */
async function checkOnlyDroppedSkipped(
  state: ShipState,
  spool: Spool,
  from: number,
  cutSeq: number,
): Promise<void> {
  for await (const { spoolSeq, record } of spooledEnvelopes(spool, from, cutSeq)) {
    // A stream the state forgot had its closing manifest shipped: what follows it was dropped.
    const stream = state.stream(record.stream);
    if (stream && (stream.head.kind !== 'close' || record.seq < stream.nextRecordSeq)) {
      throw new AuditStateError(
        `the shipper state (cut at ${cutSeq}) skips record ${record.seq} of ${record.stream} (spool seq ${spoolSeq}), never shipped`,
      );
    }
  }
}

/**
 * Registers the stream (its key, and its genesis manifest in the outbox) before
 * any of its records can exist; returns the seq of its next record and its key id.
 */
async function openStream(
  state: ShipState,
  spool: Spool,
  options: AuditRecorderOptions,
  stream: string,
): Promise<{ nextRecordSeq: number; keyId: string }> {
  const existing = state.stream(stream);
  if (existing) {
    if (existing.head.kind === 'close') throw new AuditStateError(`stream ${stream} is closed`);
    // The same incarnation again: carry on after its last spooled record.
    const last = await lastSpooledSeq(spool, state.data.cutSeq, stream);
    const { keyId } = state.signingKey(existing);
    return { nextRecordSeq: last >= 0 ? last + 1 : existing.nextRecordSeq, keyId };
  }
  const signingKey = options.signingKey ?? generateSigningKey();
  const ref = streamRef(options.identity);
  const genesis = buildGenesis({ stream: ref, signingKey, createdAt: new Date() });
  const data = state.data;
  await state.commit(
    {
      ...data,
      streams: [...data.streams, newStreamRecord(ref, exportSigningKey(signingKey), genesis.manifest)],
      outbox: [...data.outbox, { manifest: genesis.manifest }],
    },
    "register this process's stream (its genesis manifest) at start",
    'may-spend',
  );
  return { nextRecordSeq: 0, keyId: signingKey.keyId };
}

/** The stream seq of the last record of `stream` not yet cut into a batch; -1 for none. */
async function lastSpooledSeq(spool: Spool, from: number, stream: string): Promise<number> {
  let last = -1;
  for await (const { record } of spooledEnvelopes(spool, from)) {
    if (record.stream === stream) last = record.seq;
  }
  return last;
}

/** The envelopes of the durable records from spool seq `from` up to `to` (not included), a page at a time. */
async function* spooledEnvelopes(
  spool: Spool,
  from: number,
  to = Number.MAX_SAFE_INTEGER,
): AsyncGenerator<{ spoolSeq: number; record: RecordEnvelope }> {
  let next = from;
  while (next < to) {
    const entries = await spool.readFrom(next, Math.min(scanPageRecords, to - next), Number.MAX_SAFE_INTEGER);
    for (const entry of entries) yield { spoolSeq: entry.seq, record: readEnvelope(entry.bytes) };
    const tail = entries.at(-1);
    if (!tail) return;
    next = tail.seq + 1;
  }
}
