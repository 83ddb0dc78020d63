// The long polls sidecars hold on approvals, combined. A held request waits
// up to 600 s for its approval's decision, and the approval is re-read from
// the API server every quarter second meanwhile. Read once per long poll, ten
// held requests of one approval (or ten replicas' retries of it) would read it
// ten times as often; so all long polls on one approval share one reader, which
// reads it while any of them waits and answers each once it is settled, gone,
// or its wait is over. Besides, one pod holds at most `maxPerPod` long polls at
// once: the one past them is answered at once with the approval as it stands,
// and the sidecar asks again.
import { setTimeout as sleep } from 'node:timers/promises';

export type ApprovalWaitsOptions<T> = {
  /** The approval as it stands now (any due expiry applied); undefined once it is gone. */
  read(namespace: string, name: string): Promise<T | undefined>;
  /** Whether no decision can come any more: waiters are answered. */
  settled(value: T): boolean;
  /** How often a waited-on approval is read. */
  pollMs: number;
  /** The most long polls one pod holds at once. */
  maxPerPod: number;
};

type Waiter<T> = {
  /** On the `performance.now()` clock. */
  readonly deadline: number;
  /** Whether the caller went away: it is answered nothing, and no longer read for. */
  readonly gone: () => boolean;
  readonly resolve: (value: T | undefined) => void;
  readonly reject: (error: unknown) => void;
};

export class ApprovalWaits<T> {
  readonly #options: ApprovalWaitsOptions<T>;
  /** The waiters of each approval read now, by namespace/name. */
  readonly #readers = new Map<string, Set<Waiter<T>>>();
  readonly #perPod = new Map<string, number>();

  constructor(options: ApprovalWaitsOptions<T>) {
    this.#options = options;
  }

  /**
   * Takes one of `pod`'s long polls; undefined when it holds as many as it
   * may. Call the function returned once the long poll is answered.
   */
  enter(pod: string): (() => void) | undefined {
    const held = this.#perPod.get(pod) ?? 0;
    if (held >= this.#options.maxPerPod) return undefined;
    this.#perPod.set(pod, held + 1);
    let left = false;
    return () => {
      if (left) return;
      left = true;
      const now = (this.#perPod.get(pod) ?? 1) - 1;
      if (now > 0) this.#perPod.set(pod, now);
      else this.#perPod.delete(pod);
    };
  }

  /**
   * The approval once settled or gone (undefined), or as it stands at
   * `deadline`; read no sooner than `pollMs` from now. Rejects with the read's
   * error, as each of its waiters does.
   */
  wait(namespace: string, name: string, deadline: number, gone: () => boolean): Promise<T | undefined> {
    return new Promise((resolve, reject) => {
      const key = `${namespace}/${name}`;
      const waiter: Waiter<T> = { deadline, gone, resolve, reject };
      const waiters = this.#readers.get(key);
      if (waiters !== undefined) {
        waiters.add(waiter);
        return;
      }
      const started = new Set([waiter]);
      this.#readers.set(key, started);
      void this.#read(key, namespace, name, started);
    });
  }

  /** Reads the approval while anyone waits on it; the last answer ends the reader. */
  async #read(key: string, namespace: string, name: string, waiters: Set<Waiter<T>>): Promise<void> {
    try {
      while (waiters.size > 0) {
        await sleep(this.#pause(waiters));
        answerGone(waiters);
        if (waiters.size === 0) break;
        let value: T | undefined;
        try {
          value = await this.#options.read(namespace, name);
        } catch (error) {
          for (const waiter of waiters) waiter.reject(error);
          waiters.clear();
          break;
        }
        answerGone(waiters);
        const over = value === undefined || this.#options.settled(value);
        const now = performance.now();
        for (const waiter of waiters) {
          if (!over && now < waiter.deadline) continue;
          waiter.resolve(value);
          waiters.delete(waiter);
        }
      }
    } finally {
      this.#readers.delete(key);
    }
  }

  /** Until the next read: `pollMs`, or less when a wait ends sooner. */
  #pause(waiters: ReadonlySet<Waiter<T>>): number {
    let first = Number.POSITIVE_INFINITY;
    for (const waiter of waiters) first = Math.min(first, waiter.deadline);
    return Math.max(0, Math.min(this.#options.pollMs, first - performance.now()));
  }
}

/** Callers that went away are answered nothing (undefined): nobody hears it. */
function answerGone<T>(waiters: Set<Waiter<T>>): void {
  for (const waiter of waiters) {
    if (!waiter.gone()) continue;
    waiter.resolve(undefined);
    waiters.delete(waiter);
  }
}
