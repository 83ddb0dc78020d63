// The audit sink of the request path: a record line numbered in its stream
// (0, 1, 2 …, the seq verifiers check for gaps) goes into the spool, and the
// append resolves once the line is fsynced, or, when the caller asks for no
// more, once the spool has queued it for its next group commit. The spool
// numbers lines by its own position, across streams and restarts; the two
// seqs differ.
import type { AppendUntil, AuditDraft, AuditSink } from './sink.ts';
import { frameLine, type Spool, SpoolFullError } from './spool.ts';
import type { RecordEncoder } from './stream.ts';

export type DurableSinkOptions = {
  spool: Spool;
  encoder: RecordEncoder;
  /** The stream seq of the next record. */
  nextSeq: number;
  /**
   * Room kept for requests already let in: `accepting()` turns false this far
   * from full, so a request that passed the check still finds room for its
   * records (two when it is forwarded: its first part and the full record).
   */
  reserveBytes: number;
  /** Called after each record becomes durable. */
  onDurable?: () => void;
};

export class DurableSink implements AuditSink {
  readonly #spool: Spool;
  readonly #encoder: RecordEncoder;
  readonly #reserveBytes: number;
  readonly #onDurable: () => void;
  readonly #inFlight = new Set<Promise<unknown>>();
  #nextSeq: number;
  #lastDurableSeq: number;
  #closed = false;

  constructor(options: DurableSinkOptions) {
    this.#spool = options.spool;
    this.#encoder = options.encoder;
    this.#nextSeq = options.nextSeq;
    // The same incarnation reopened: its earlier records are in the spool already.
    this.#lastDurableSeq = options.nextSeq - 1;
    this.#reserveBytes = options.reserveBytes;
    this.#onDurable = options.onDurable ?? (() => undefined);
  }

  get stream(): string {
    return this.#encoder.stream;
  }

  /** The stream seq of the last durable record of the stream; -1 for none. */
  get lastDurableSeq(): number {
    return this.#lastDurableSeq;
  }

  /** The stream seq the next record gets. */
  get nextSeq(): number {
    return this.#nextSeq;
  }

  accepting(): boolean {
    return !this.#closed && this.#spool.room() > this.#reserveBytes;
  }

  failed(): boolean {
    return this.#spool.failed();
  }

  append(draft: AuditDraft, until: AppendUntil = 'durable'): Promise<void> {
    if (this.#closed) throw new Error('the audit sink is closed');
    const frame = frameLine(this.#encoder.encode(draft, this.#nextSeq));
    // A refusal for want of room must not eat the reserve of requests already
    // let in; the end of a forwarded request is one of those.
    const refusal = draft.outcome === 'unavailable' && draft.completes === undefined;
    const floor = refusal ? this.#reserveBytes : 0;
    if (this.#spool.room() - frame.length < floor) {
      // Checked before the seq is taken: a record the spool refuses leaves no
      // gap. Past this check the spool queues the line at once (room() is 0
      // once it has failed or closed).
      throw new SpoolFullError('the audit spool is full');
    }
    const seq = this.#nextSeq;
    this.#nextSeq += 1;
    const durable = this.#spool.append(frame, { urgent: until === 'durable' }).then(() => {
      this.#lastDurableSeq = Math.max(this.#lastDurableSeq, seq);
      this.#onDurable();
    });
    this.#inFlight.add(durable);
    // Also what keeps a queued record's failure from going unhandled: a failed
    // spool refuses every later record, and so every later request.
    void durable.then(
      () => this.#inFlight.delete(durable),
      () => this.#inFlight.delete(durable),
    );
    return until === 'durable' ? durable : Promise.resolve();
  }

  /** Takes no more records and waits for those taken to be durable (or to fail). */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.allSettled([...this.#inFlight]);
  }
}
