// The approval's own audit trail. Besides the one `request` record of each
// request, the sidecar records `approval.requested` when it opens an approval
// and one `approval.decided` per decision on it (an approve, a deny, or the
// approval expiring). A request waiting on the approval records what it sees;
// besides, the sidecar that opened the approval follows it until it is settled
// (follow.ts), across restarts of the sidecar in the same pod, so every
// decision is on record even when its caller never came back. An approval
// opened by a pod that is gone before it is settled has its remaining
// decisions recorded only by a request that presents it later.
import type { AuditRecordInput } from '@veil/core';
import type { ApprovalView } from './client.ts';

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
 * many observe it: a hold polling again, a deferred caller retrying, the
 * follower (follow.ts), which also seeds it at start with what an earlier
 * start recorded of the approvals it still follows.
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

/** The record schema's limits on an approver's subject (and an approval id) and reason. */
export const MAX_SUBJECT = 512;
export const MAX_REASON = 1024;

/** One event a view of an approval implies, under the key that makes it recorded once. */
export interface DecisionEvent {
  readonly key: string;
  readonly event: ApprovalEvent;
}

/**
 * The `approval.decided` events `view` implies: each decision in the order the
 * controller lists them, then its expiry once its phase says so (a use refused
 * for lateness of an approval decided, or used, in time is no expiry of it).
 */
export function decisionEvents(view: ApprovalView, fallbackRequestedAt: string): DecisionEvent[] {
  const id = `${view.namespace}/${view.name}`.slice(0, MAX_SUBJECT);
  const requestedAt = isoMillis(view.requestedAt) ?? fallbackRequestedAt;
  const decidedAt = isoMillis(view.decidedAt);
  const events: DecisionEvent[] = [];
  for (const decision of view.decisions) {
    const time = isoMillis(decision.time);
    if (time === undefined) continue;
    const approver = {
      subject: decision.approver.slice(0, MAX_SUBJECT),
      time,
      ...(decision.reason ? { reason: decision.reason.slice(0, MAX_REASON) } : {}),
    };
    events.push(
      keyed({
        kind: 'approval.decided',
        outcome: decision.decision === 'approve' ? 'allowed' : 'approval_denied',
        approval: { id, approvers: [approver], requestedAt, ...(decidedAt ? { decidedAt } : {}) },
      }),
    );
  }
  if (view.phase !== 'Expired') return events;
  // The controller keeps no time of expiry but the deadline itself. An
  // approval expires once, so its expiry is known by the approval alone.
  const expiredAt = isoMillis(view.expiresAt) ?? new Date().toISOString();
  events.push(
    keyed({
      kind: 'approval.decided',
      outcome: 'approval_expired',
      approval: { id, approvers: [], requestedAt, decidedAt: expiredAt },
    }),
  );
  return events;
}

/** The decision an `approval.decided` record's outcome stands for. */
const outcomeDecisions: ReadonlyMap<string, 'approve' | 'deny'> = new Map([
  ['allowed', 'approve'],
  ['approval_denied', 'deny'],
]);

function keyed(event: ApprovalEvent): DecisionEvent {
  const key = decisionKey(event);
  if (key === undefined) throw new Error(`no decision key for a ${event.kind} event`);
  return { key, event };
}

/**
 * The RecordedDecisions key of an `approval.decided` record (one approver, or
 * none for the expiry); undefined for any other. Computed from the record
 * alone, so a decision a request recorded is known by the same key as the
 * follower's (see ApprovalFollower.watch).
 */
export function decisionKey(record: {
  readonly kind?: string | undefined;
  readonly outcome: string;
  readonly approval?: ApprovalRecordRef | undefined;
}): string | undefined {
  if (record.kind !== 'approval.decided' || record.approval === undefined) return undefined;
  const { id, approvers } = record.approval;
  if (record.outcome === 'approval_expired')
    return approvers.length === 0 ? RecordedDecisions.key(id, '', 'expire', '') : undefined;
  const decision = outcomeDecisions.get(record.outcome);
  const [approver, ...more] = approvers;
  if (decision === undefined || approver === undefined || more.length > 0) return undefined;
  return RecordedDecisions.key(id, approver.subject, decision, approver.time);
}

/** The record wants RFC 3339 UTC with milliseconds; the API server writes seconds. */
export function isoMillis(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const time = Date.parse(value);
  return Number.isNaN(time) ? undefined : new Date(time).toISOString();
}
