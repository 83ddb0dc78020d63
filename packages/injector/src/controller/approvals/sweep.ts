// The sweep: marks Pending approvals Expired once stale or once their rule
// changed, and deletes settled ones kept their time past expiry.
import { expiryDue, removalDue, ruleChangeRefusal } from '@veil/core';
import type { DesiredPolicy } from '../distributor.ts';
import type { Log } from '../log.ts';
import { type ExpiryDue, expire } from './expiry.ts';
import { ruleIn } from './rules.ts';
import type { ApprovalStore, Stored } from './store.ts';

/** What a sweep did with one approval. */
export type SweepOutcome = 'expired' | 'removed' | 'kept';
export type SweepCounts = { expired: number; removed: number; failed: number };

export type ApprovalSweepOptions = {
  store: ApprovalStore;
  now: () => Date;
  policy(namespace: string, name: string): DesiredPolicy | undefined;
  /** Whether `policy` answers from a cache in sync with the API server. */
  inSync(): boolean;
  /** How long a settled approval is kept past its expiry before it is deleted; undefined keeps it. */
  keepForMs: number | undefined;
  log: Log;
};

export class ApprovalSweep {
  readonly #options: ApprovalSweepOptions;

  constructor(options: ApprovalSweepOptions) {
    this.#options = options;
  }

  /** One sweep now: how many approvals it expired, deleted, and failed to handle. */
  async sweepNow(): Promise<SweepCounts> {
    const items = await this.#options.store.list();
    return sweepEach(
      items,
      (stored) => this.#sweepOne(stored),
      (stored, error) =>
        this.#options.log.warn('approval not swept', {
          namespace: stored.metadata.namespace,
          name: stored.metadata.name,
          error: (error as Error).message,
        }),
    );
  }

  /** One approval's turn in a sweep. */
  async #sweepOne(stored: Stored): Promise<SweepOutcome> {
    const after = await expire(this.#options.store, stored, this.#sweepExpiry(stored));
    if (after.status.phase === 'Expired' && stored.status.phase === 'Pending') return 'expired';
    return (await this.#removeIfDue(after)) ? 'removed' : 'kept';
  }

  /**
   * Why the sweep marks a Pending approval Expired, or undefined while it may
   * still be used: its time is up, or the rule it was opened under has changed
   * or gone in the valid version of the policy this replica holds. A use would
   * then be refused (409, reason `rule`, as reads and uses answer meanwhile),
   * so approvers would decide in vain, and the requester is to ask anew; the
   * message says why. Without a valid version here, only time expires it.
   */
  #sweepExpiry(stored: Stored): ExpiryDue | undefined {
    if (stored.status.phase !== 'Pending') return undefined;
    if (expiryDue(stored.spec, stored.status, this.#options.now())) return {};
    if (!this.#options.inSync()) return undefined;
    const desired = this.#options.policy(stored.metadata.namespace, stored.spec.policy);
    if (desired === undefined) return undefined;
    const refusal = ruleChangeRefusal(stored.metadata.name, stored.spec, ruleIn(desired, stored.spec.rule));
    return refusal === undefined ? undefined : { message: refusal.error };
  }

  /** Deletes a settled approval kept its time, unless it changed since it was read. */
  async #removeIfDue(stored: Stored): Promise<boolean> {
    const { keepForMs } = this.#options;
    if (keepForMs === undefined || !removalDue(stored.spec, stored.status, this.#options.now(), keepForMs)) {
      return false;
    }
    return this.#options.store.deleteIfUnchanged(stored);
  }
}

/** Sweeps every `intervalMs`, logging what each sweep did; call the function returned to stop. */
export function sweepEvery(sweep: ApprovalSweep, intervalMs: number, log: Log): () => void {
  const timer = setInterval(() => {
    sweep.sweepNow().then(
      ({ expired, removed, failed }) => {
        if (expired > 0) log.info('approvals expired', { count: expired });
        if (removed > 0) log.info('settled approvals deleted', { count: removed });
        if (failed > 0) log.warn('approvals left for the next sweep', { count: failed });
      },
      (error) => log.warn('approval sweep failed', { error: (error as Error).message }),
    );
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

/**
 * Gives each item its turn in order. One whose turn fails is reported and
 * counted, and the rest still get theirs: one approval the API server keeps
 * refusing must not hold back the expiry or deletion of every other.
 */
export async function sweepEach<T>(
  items: readonly T[],
  step: (item: T) => Promise<SweepOutcome>,
  failed: (item: T, error: unknown) => void,
): Promise<SweepCounts> {
  const counts: SweepCounts = { expired: 0, removed: 0, failed: 0 };
  for (const item of items) {
    try {
      const outcome = await step(item);
      if (outcome !== 'kept') counts[outcome]++;
    } catch (error) {
      counts.failed++;
      failed(item, error);
    }
  }
  return counts;
}
