// Approvals under `veil dev`: the sidecar's approvals client, kept in this
// process instead of at the controller, plus what the local approvals API needs
// to list them and record decisions. It plays the controller (open, long poll,
// use, expiry) and the stamping webhook (who may decide) with the same rules from
// @veil/core, so a held request behaves here as it does in a cluster, the quota of
// Pending approvals per requester included. Approvals live in memory: a restart
// of `veil dev` forgets them.
import { randomBytes } from 'node:crypto';
import {
  type ApprovalRule,
  type ApprovalStatus,
  type ApprovalUser,
  approvalView,
  checkUse,
  countsAsPending,
  DEFAULT_MAX_PENDING_PER_CALLER,
  expiryDue,
  markFailure,
  newApprovalSpec,
  openApprovalSchema,
  openProblems,
  pendingQuotaRefusal,
  type StoredApproval,
  stampApprovalStatus,
  type UseApprovalRequest,
  useApprovalSchema,
} from '@veil/core';
import type { ApprovalsClient, ApprovalView, OpenApproval, UseResult } from '@veil/sidecar';
import { printable } from '../printable.ts';

/** Who expires approvals and records their use; decisions never come from it. */
const CONTROLLER = 'system:veil-dev-controller';
const settings = { controllerUsernames: [CONTROLLER] };
const controller: ApprovalUser = { username: CONTROLLER, groups: [] };

export interface DevApprovalsOptions {
  /** The namespace approvals are opened in: the dev sidecar's pod namespace. */
  readonly namespace: string;
  /** The policy `veil dev` enforces: its name and approval rules. */
  readonly policyName: string;
  readonly rules: readonly ApprovalRule[];
  /** The policy's approvals.maxPendingPerCaller. */
  readonly maxPendingPerCaller?: number;
  readonly now?: () => Date;
  /** One line per approval opened, decided or expired, for the developer's terminal. */
  readonly log?: (line: string) => void;
}

export type DecideResult =
  | { ok: true; approval: StoredApproval }
  | { ok: false; status: 403 | 404; message: string };

/** Thrown to the sidecar, which fails the held request closed (503). */
export class DevApprovalsError extends Error {
  override name = 'DevApprovalsError';
}

/** Thrown to the sidecar for an approval that does not exist: 404, so a follower drops it, as in a cluster. */
export class DevApprovalGoneError extends DevApprovalsError {
  override name = 'DevApprovalGoneError';
  readonly status = 404;
}

/** Thrown to the sidecar for a requester with its quota of approvals Pending: 429, as in a cluster. */
export class DevPendingQuotaError extends Error {
  override name = 'DevPendingQuotaError';
  readonly status = 429;
}

export class DevApprovals implements ApprovalsClient {
  readonly namespace: string;
  readonly #options: DevApprovalsOptions;
  readonly #now: () => Date;
  readonly #approvals = new Map<string, StoredApproval>();
  readonly #timers = new Map<string, NodeJS.Timeout>();
  readonly #waiters = new Set<{ key: string; wake(): void }>();
  #closed = false;

  constructor(options: DevApprovalsOptions) {
    this.namespace = options.namespace;
    this.#options = options;
    this.#now = options.now ?? (() => new Date());
  }

  async open(body: OpenApproval): Promise<ApprovalView> {
    this.#open();
    const parsed = openApprovalSchema.safeParse(body);
    if (!parsed.success)
      throw new DevApprovalsError(`the approval request is invalid: ${openProblems(parsed.error)}`);
    const rule =
      parsed.data.policy === this.#options.policyName
        ? this.#options.rules.find((r) => r.name === parsed.data.rule)
        : undefined;
    if (rule === undefined) {
      throw new DevApprovalsError(`no approval rule ${parsed.data.rule} in policy ${parsed.data.policy}`);
    }
    this.#refuseOverQuota(parsed.data.requester);
    const now = this.#now();
    const approval: StoredApproval = {
      namespace: this.namespace,
      name: `ea-${randomBytes(6).toString('hex')}`,
      createdAt: now.toISOString(),
      spec: newApprovalSpec(parsed.data, this.namespace, rule, now),
      status: { phase: 'Pending', decisions: [] },
    };
    const key = keyOf(approval.namespace, approval.name);
    this.#approvals.set(key, approval);
    this.#armExpiry(key, approval);
    this.#options.log?.(
      // The caller chose its subject claim and the model name: they reach the developer's terminal printable.
      `approval ${key} opened: ${printable(approval.spec.requester.subject)} asked ${printable(approval.spec.request.model)} for ` +
        `${approval.spec.request.inputCount} input(s) under rule ${rule.name}; needs ` +
        `${rule.approvers.count} of ${rule.approvers.groups.join(', ')} (veil approvals show ${key} --dev)`,
    );
    return this.#view(approval);
  }

  /** As the controller refuses an open: the requester's Pending approvals, counted as they stand. */
  #refuseOverQuota(requester: { issuer: string; subject: string }): void {
    const limit = this.#options.maxPendingPerCaller ?? DEFAULT_MAX_PENDING_PER_CALLER;
    const now = this.#now();
    const pending = this.list().filter((approval) => countsAsPending(approval, requester, now)).length;
    const refusal = pendingQuotaRefusal(pending, limit, this.namespace, `policy ${this.#options.policyName}`);
    if (refusal === undefined) return;
    this.#options.log?.(
      `approval refused: ${printable(requester.subject)} has ${pending} pending (approvals.maxPendingPerCaller: ${limit})`,
    );
    throw new DevPendingQuotaError(refusal);
  }

  async wait(
    namespace: string,
    name: string,
    waitSeconds: number,
    signal?: AbortSignal,
  ): Promise<ApprovalView> {
    this.#open();
    const key = keyOf(namespace, name);
    let approval = this.#current(key);
    if (approval === undefined) throw new DevApprovalGoneError(`no approval ${key}`);
    if (approval.status.phase === 'Pending' && waitSeconds > 0) {
      await new Promise<void>((resolve) => {
        const waiter = {
          key,
          wake: () => {
            clearTimeout(timer);
            signal?.removeEventListener('abort', waiter.wake);
            this.#waiters.delete(waiter);
            resolve();
          },
        };
        const timer = setTimeout(waiter.wake, Math.min(waitSeconds, 600) * 1000);
        this.#waiters.add(waiter);
        signal?.addEventListener('abort', waiter.wake, { once: true });
      });
      signal?.throwIfAborted();
      this.#open();
      approval = this.#current(key) ?? approval;
    }
    return this.#view(approval);
  }

  async use(namespace: string, name: string, body: UseApprovalRequest): Promise<UseResult> {
    this.#open();
    const presented = useApprovalSchema.safeParse(body);
    if (!presented.success) throw new DevApprovalsError('the use request is invalid');
    const key = keyOf(namespace, name);
    const approval = this.#current(key);
    if (approval === undefined) {
      return {
        ok: false,
        status: 404,
        reason: 'unknown',
        message: `no approval ${key}`,
        approval: undefined,
      };
    }
    const now = this.#now();
    const check = checkUse(name, approval, presented.data, now);
    if (!check.ok) {
      return {
        ok: false,
        status: check.status,
        reason: check.reason,
        message: check.error,
        approval: check.withApproval ? this.#view(approval) : undefined,
      };
    }
    if (check.markUsed) {
      // Check and mark happen in one turn of the event loop: of two concurrent uses, one wins.
      const marked = this.#write(
        key,
        approval,
        { ...approval.status, usedAt: now.toISOString() },
        controller,
      );
      if (!marked.ok) return this.#markFailed(key, name, presented.data, now);
      return { ok: true, approval: this.#view(marked.approval) };
    }
    return { ok: true, approval: this.#view(approval) };
  }

  /** As the controller answers a use it could not mark: refused if no longer usable, else retried. */
  #markFailed(key: string, name: string, presented: UseApprovalRequest, now: Date): UseResult {
    const current = this.#current(key);
    const failure = markFailure(name, current, presented, now);
    if (failure.status === 503) throw new DevApprovalsError(failure.error);
    return {
      ok: false,
      status: failure.status,
      reason: failure.reason,
      message: failure.error,
      approval: failure.withApproval && current ? this.#view(current) : undefined,
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    for (const waiter of [...this.#waiters]) waiter.wake();
  }

  /** Every approval, oldest first. */
  list(): StoredApproval[] {
    return [...this.#approvals.keys()]
      .map((key) => this.#current(key))
      .filter((approval): approval is StoredApproval => approval !== undefined);
  }

  get(namespace: string, name: string): StoredApproval | undefined {
    return this.#current(keyOf(namespace, name));
  }

  /** One decision by `user`, who must be the authenticated approver. */
  decide(
    namespace: string,
    name: string,
    user: ApprovalUser,
    sent: { decision: 'approve' | 'deny'; reason: string },
  ): DecideResult {
    const key = keyOf(namespace, name);
    const approval = this.#current(key);
    if (approval === undefined) return { ok: false, status: 404, message: `no approval ${key}` };
    const next = { ...approval.status, decisions: [...approval.status.decisions, sent] };
    const written = this.#write(key, approval, next, user);
    if (!written.ok) return { ok: false, status: 403, message: written.message };
    const status = written.approval.status;
    this.#options.log?.(
      `approval ${key}: ${printable(user.username)} ${sent.decision === 'approve' ? 'approved' : 'denied'}; now ${status.phase}`,
    );
    return { ok: true, approval: written.approval };
  }

  /** Applies one status change under the stamping rules, and wakes whoever waits on it. */
  #write(
    key: string,
    approval: StoredApproval,
    newStatus: ApprovalStatus | Record<string, unknown>,
    user: ApprovalUser,
  ): { ok: true; approval: StoredApproval } | { ok: false; message: string } {
    const stamped = stampApprovalStatus({
      spec: approval.spec,
      oldStatus: approval.status,
      newStatus,
      user,
      now: this.#now(),
      settings,
    });
    if (!stamped.ok) return stamped;
    const next = { ...approval, status: stamped.status };
    this.#approvals.set(key, next);
    if (next.status.phase !== 'Pending') {
      clearTimeout(this.#timers.get(key));
      this.#timers.delete(key);
    }
    for (const waiter of [...this.#waiters]) if (waiter.key === key) waiter.wake();
    return { ok: true, approval: next };
  }

  /** The approval as it stands, expired first if its time is up. */
  #current(key: string): StoredApproval | undefined {
    const approval = this.#approvals.get(key);
    if (approval === undefined || !expiryDue(approval.spec, approval.status, this.#now())) return approval;
    const expired = this.#write(key, approval, { ...approval.status, phase: 'Expired' }, controller);
    if (expired.ok) this.#options.log?.(`approval ${key} expired undecided`);
    return expired.ok ? expired.approval : approval;
  }

  /** Expires it on time even if nobody asks, so a long poll ends when it does. */
  #armExpiry(key: string, approval: StoredApproval): void {
    const delay = Math.max(0, Date.parse(approval.spec.expiresAt) - this.#now().getTime());
    const timer = setTimeout(() => {
      this.#timers.delete(key);
      this.#current(key);
    }, delay + 10);
    timer.unref();
    this.#timers.set(key, timer);
  }

  #view(approval: StoredApproval): ApprovalView {
    const rule = this.#options.rules.find((r) => r.name === approval.spec.rule);
    return approvalView(approval, rule);
  }

  #open(): void {
    if (this.#closed) throw new DevApprovalsError('veil dev is shutting down');
  }
}

function keyOf(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}
