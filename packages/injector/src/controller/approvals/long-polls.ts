// The long polls of sidecars waiting on a decision, shared per approval and
// capped per pod (see waits.ts).

import { expireIfDue } from './expiry.ts';
import type { PodCaller } from './pod-callers.ts';
import type { ApprovalStore, Stored } from './store.ts';
import { ApprovalWaits } from './waits.ts';

/** How often an approval long-polled is re-read, however many long polls wait on it. */
const pollMs = 250;
/**
 * A sidecar holds a caller's requests up to its policy's maxPendingPerCaller
 * (default 10), and all held requests within half its body budget: a few
 * callers' worth. Past this, a pod's long poll is answered at once, as it
 * stands, and the sidecar asks again a second later.
 */
const defaultMaxLongPollsPerPod = 64;

export type LongPollsOptions = {
  store: ApprovalStore;
  now: () => Date;
  /** The most long polls one pod holds at once; default 64. */
  maxPerPod: number | undefined;
};

export class LongPolls {
  readonly #waits: ApprovalWaits<Stored>;

  constructor(options: LongPollsOptions) {
    const { store, now } = options;
    this.#waits = new ApprovalWaits<Stored>({
      read: async (namespace, name) => {
        const stored = await store.read(namespace, name);
        return stored === undefined ? undefined : expireIfDue(store, stored, now());
      },
      settled: (stored) => stored.status.phase !== 'Pending',
      pollMs,
      maxPerPod: options.maxPerPod ?? defaultMaxLongPollsPerPod,
    });
  }

  /**
   * The approval once decided, or as it stands at `deadline`; undefined once
   * gone. Past the pod's long polls, as it stands now.
   */
  async awaitDecision(
    who: PodCaller,
    stored: Stored,
    deadline: number,
    gone: () => boolean,
  ): Promise<Stored | undefined> {
    if (stored.status.phase !== 'Pending' || performance.now() >= deadline) return stored;
    const leave = this.#waits.enter(`${who.namespace}/${who.pod.name}`);
    if (leave === undefined) return stored;
    try {
      return await this.#waits.wait(stored.metadata.namespace, stored.metadata.name, deadline, gone);
    } finally {
      leave();
    }
  }
}
