// Who may decide on an EmbeddingApproval, and what a decision does to its status.
// The cluster applies these rules in the admission webhook that stamps decisions
// sent through the API server; `veil dev` applies them in its local approvals
// service. Either way the approver is the authenticated caller, never what the
// body claims, and the phase follows from the recorded decisions.
//
// Who is the requester, in Kubernetes terms: a request held for an
// `{issuer, subject}` caller is the own request of the Kubernetes user whose
// username is `subject` (service-account callers: `system:serviceaccount:NS:NAME`;
// OIDC with `--oidc-username-claim=sub` and the prefix `-`) or `issuer#subject`
// (the API server's default username for a non-email OIDC claim). A cluster that
// maps OIDC users with another prefix must name it in `requesterUsernamePrefixes`
// (the chart's `approvals.requesterUsernamePrefixes`).
import { isDeepStrictEqual } from 'node:util';
import { z } from 'zod';
import {
  type ApprovalDecision,
  type ApprovalSpec,
  type ApprovalStatus,
  approvalPhases,
  approvalStatusSchema,
} from './schema.ts';

export type ApprovalStampSettings = {
  /** Usernames allowed to set `phase: Expired`, `usedAt` and `message` (the controller's identity). */
  controllerUsernames: readonly string[];
  /** Extra prefixes the cluster puts before an OIDC subject to make a username (e.g. `oidc:`). */
  requesterUsernamePrefixes?: readonly string[];
};

export type ApprovalUser = { username: string; groups: readonly string[] };

export type StampInput = {
  spec: ApprovalSpec;
  /** The stored status; undefined before the controller first wrote one. */
  oldStatus: unknown;
  /** The status the caller sent. */
  newStatus: unknown;
  user: ApprovalUser;
  now: Date;
  settings: ApprovalStampSettings;
};

export type StampResult =
  | { ok: true; status: ApprovalStatus; warnings: string[] }
  | { ok: false; message: string };

const terminal = new Set<string>(['Approved', 'Denied', 'Expired']);

/** What a caller may send: decisions need only `decision` and `reason`; the rest is stamped. */
const sentDecisionSchema = z.looseObject({
  decision: z.enum(['approve', 'deny']),
  reason: z.string().trim().min(1, 'a decision needs a reason').max(1024),
});

const sentStatusSchema = z.looseObject({
  phase: z.enum(approvalPhases).optional(),
  decisions: z.array(z.unknown()).optional(),
  usedAt: z.iso.datetime().optional(),
  message: z.string().max(1024).optional(),
});

/** The usernames that are the requester themself. */
export function requesterUsernames(
  requester: ApprovalSpec['requester'],
  prefixes: readonly string[] = [],
): string[] {
  return [
    requester.subject,
    `${requester.issuer}#${requester.subject}`,
    ...prefixes.map((prefix) => `${prefix}${requester.subject}`),
  ];
}

/** The status to store for one status update, or why it is refused. */
export function stampApprovalStatus(input: StampInput): StampResult {
  const { spec, user, now, settings } = input;
  const oldParsed =
    input.oldStatus === undefined || input.oldStatus === null
      ? approvalStatusSchema.safeParse({})
      : approvalStatusSchema.safeParse(input.oldStatus);
  if (!oldParsed.success) return refuse('the stored status is not valid; only the controller can repair it');
  const old = oldParsed.data;

  const sentParsed = sentStatusSchema.safeParse(input.newStatus ?? {});
  if (!sentParsed.success) return refuse(`the status is not valid: ${issues(sentParsed.error)}`);
  const sent = sentParsed.data;
  const sentDecisions = sent.decisions ?? [];
  const isController = settings.controllerUsernames.includes(user.username);
  const warnings: string[] = [];

  // Recorded decisions are immutable: the sent list must start with them, unchanged.
  if (sentDecisions.length < old.decisions.length) {
    return refuse('recorded decisions cannot be removed');
  }
  for (let i = 0; i < old.decisions.length; i++) {
    if (!isDeepStrictEqual(normalise(sentDecisions[i]), normalise(old.decisions[i]))) {
      return refuse(`recorded decision ${i + 1} (by ${old.decisions[i]?.approver}) cannot be changed`);
    }
  }
  const added = sentDecisions.slice(old.decisions.length);
  const decisions: ApprovalDecision[] = [...old.decisions];

  if (added.length > 1) {
    return refuse(`${user.username} may add one decision, not ${added.length}: each approver decides once`);
  }
  if (added.length === 1) {
    const parsed = sentDecisionSchema.safeParse(added[0]);
    if (!parsed.success) return refuse(`the new decision is not valid: ${issues(parsed.error)}`);
    if (terminal.has(old.phase)) {
      return refuse(`the approval is already ${old.phase}; no further decisions are taken`);
    }
    if (Date.parse(spec.expiresAt) <= now.getTime()) {
      return refuse(`the approval expired at ${spec.expiresAt}; no further decisions are taken`);
    }
    if (requesterUsernames(spec.requester, settings.requesterUsernamePrefixes).includes(user.username)) {
      return refuse(`${user.username} requested this call and cannot decide on their own request`);
    }
    if (!user.groups.some((group) => spec.approvers.groups.includes(group))) {
      return refuse(
        `${user.username} is not an approver of this request: it needs a member of ${spec.approvers.groups.join(', ')}`,
      );
    }
    if (old.decisions.some((d) => d.approver === user.username)) {
      return refuse(`${user.username} has already decided on this request; each approver decides once`);
    }
    const stamped = added[0] as { approver?: unknown };
    if (stamped.approver !== undefined && stamped.approver !== user.username) {
      warnings.push(`the approver is recorded as ${user.username}, the authenticated user, not as sent`);
    }
    decisions.push({
      approver: user.username,
      groups: [...user.groups],
      decision: parsed.data.decision,
      reason: parsed.data.reason,
      time: now.toISOString(),
    });
  }

  // The phase follows from the decisions; a terminal phase is never left. Only the
  // controller expires a request, and only a Pending one.
  let phase: ApprovalStatus['phase'] = terminal.has(old.phase)
    ? old.phase
    : phaseOf(decisions, spec.approvers.count);
  if (sent.phase === 'Expired' && old.phase !== 'Expired') {
    if (!isController) return refuse('only the Veil controller marks an approval Expired');
    if (phase !== 'Pending') return refuse(`the approval is ${phase}; only a Pending approval expires`);
    phase = 'Expired';
  } else if (sent.phase !== undefined && sent.phase !== old.phase && sent.phase !== phase) {
    warnings.push(`the phase is computed from the decisions: ${phase}, not ${sent.phase}`);
  }
  const decidedAt = old.decidedAt ?? (phase !== 'Pending' ? now.toISOString() : undefined);

  let usedAt = old.usedAt;
  if (sent.usedAt !== old.usedAt) {
    if (!isController) return refuse('only the Veil controller records the use of an approval');
    if (old.usedAt !== undefined) return refuse(`the approval was already used at ${old.usedAt}`);
    if (phase !== 'Approved') return refuse(`the approval is ${phase}; only an Approved one can be used`);
    usedAt = sent.usedAt;
  }
  let message = old.message;
  if (sent.message !== old.message) {
    if (isController) message = sent.message;
    else warnings.push('the status message is written by the Veil controller only');
  }

  const status: ApprovalStatus = {
    phase,
    decisions,
    ...(decidedAt === undefined ? {} : { decidedAt }),
    ...(usedAt === undefined ? {} : { usedAt }),
    ...(message === undefined ? {} : { message }),
  };
  return { ok: true, status, warnings };
}

/** Approved once `count` distinct approvers approved; Denied on any deny. */
export function phaseOf(decisions: readonly ApprovalDecision[], count: number): ApprovalStatus['phase'] {
  if (decisions.some((d) => d.decision === 'deny')) return 'Denied';
  const approvers = new Set(decisions.filter((d) => d.decision === 'approve').map((d) => d.approver));
  return approvers.size >= count ? 'Approved' : 'Pending';
}

/** Decisions as stored: `groups` defaults to [], so both forms compare equal. */
function normalise(decision: unknown): unknown {
  if (typeof decision !== 'object' || decision === null) return decision;
  const d = decision as Record<string, unknown>;
  return { ...d, groups: d.groups ?? [] };
}

function refuse(message: string): StampResult {
  return { ok: false, message };
}

function issues(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join('.') || '(status)'}: ${i.message}`).join('; ');
}
