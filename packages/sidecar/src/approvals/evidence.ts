// The approval's own audit trail. Besides the one `request` record of each
// request, the sidecar records `approval.requested` when it opens an approval
// and one `approval.decided` per decision it observes (an approve, a deny, or
// the approval expiring), so that an auditor sees who asked, who decided what
// and when, even for a request whose caller never came back.
import type { AuditRecordInput } from '@veil/core';

export type ApprovalRecordRef = NonNullable<AuditRecordInput['approval']>;

export interface ApprovalEvent {
  readonly kind: 'approval.requested' | 'approval.decided';
  /**
   * `held` for an approval opened. For a decision, the effect of that decision
   * alone: `allowed` for an approve (the approval may still need others),
   * `approval_denied` for a deny, `approval_expired` for the expiry.
   */
  readonly outcome: 'held' | 'allowed' | 'approval_denied' | 'approval_expired';
  /** For a decision: that decision as the only approver, or none for the expiry. */
  readonly approval: ApprovalRecordRef;
}

/** Appends the event's record; resolves once it is durable, and throws a Refusal when it cannot be. */
export type RecordApproval = (event: ApprovalEvent) => Promise<void>;

/** Past this many, the oldest decisions are forgotten. */
const DEFAULT_LIMIT = 10_000;

/**
 * The decisions this sidecar has recorded, so each is recorded once however
 * many requests observe it: a hold polling again, a deferred caller retrying.
 * A second observer of a decision still being recorded waits for that same
 * record, so no request goes on before the record of what let it is durable;
 * a record that failed is forgotten, so the next observer tries again.
 *
 * Bounded: a decision observed again after its entry was evicted is recorded
 * a second time, with the same approval id, approver and time, which readers
 * can tell for what it is. Recording twice is better than never.
 */
export class RecordedDecisions {
  readonly #entries = new Map<string, Promise<void>>();
  readonly #limit: number;

  constructor(limit = DEFAULT_LIMIT) {
    this.#limit = limit;
  }

  /** Runs `write` unless the decision under `key` was recorded or is being recorded. */
  once(key: string, write: () => Promise<void>): Promise<void> {
    const known = this.#entries.get(key);
    if (known !== undefined) return known;
    const written = write();
    this.#entries.set(key, written);
    written.catch(() => {
      if (this.#entries.get(key) === written) this.#entries.delete(key);
    });
    for (const oldest of this.#entries.keys()) {
      if (this.#entries.size <= this.#limit) break;
      this.#entries.delete(oldest);
    }
    return written;
  }

  /** What identifies one decision: the approval, who, what and when. */
  static key(approvalId: string, approver: string, decision: string, time: string): string {
    return JSON.stringify([approvalId, approver, decision, time]);
  }
}
