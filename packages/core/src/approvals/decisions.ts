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
  const { user, now, settings } = input;
  const oldParsed =
    input.oldStatus === undefined || input.oldStatus === null
      ? approvalStatusSchema.safeParse({})
      : approvalStatusSchema.safeParse(input.oldStatus);
  if (!oldParsed.success) return refuse('the stored status is not valid; only the controller can repair it');
  const old = oldParsed.data;

  const sentParsed = sentStatusSchema.safeParse(input.newStatus ?? {});
  if (!sentParsed.success) return refuse(`the status is not valid: ${issues(sentParsed.error)}`);
  const sent = sentParsed.data;
  const isController = settings.controllerUsernames.includes(user.username);
  const warnings: string[] = [];

  const decisions = decisionsAfter(input, old, sent.decisions ?? [], warnings);
  if (typeof decisions === 'string') return refuse(decisions);
  const phase = phaseAfter(input.spec, old, sent, decisions, isController, warnings);
  if (phase.refused !== undefined) return refuse(phase.refused);
  const decidedAt = old.decidedAt ?? (phase.phase !== 'Pending' ? now.toISOString() : undefined);
  const usedAt = usedAtAfter(old, sent, phase.phase, isController);
  if (usedAt.refused !== undefined) return refuse(usedAt.refused);
  let message = old.message;
  if (sent.message !== old.message) {
    if (isController) message = sent.message;
    else warnings.push('the status message is written by the Veil controller only');
  }

  const status: ApprovalStatus = {
    phase: phase.phase,
    decisions,
    ...(decidedAt === undefined ? {} : { decidedAt }),
    ...(usedAt.usedAt === undefined ? {} : { usedAt: usedAt.usedAt }),
    ...(message === undefined ? {} : { message }),
  };
  return { ok: true, status, warnings };
}

type SentStatus = z.infer<typeof sentStatusSchema>;

/** The recorded decisions and the one this caller adds, if any; a string says why the update is refused. */
function decisionsAfter(
  input: StampInput,
  old: ApprovalStatus,
  sentDecisions: readonly unknown[],
  warnings: string[],
): ApprovalDecision[] | string {
  // Recorded decisions are immutable: the sent list must start with them, unchanged.
  if (sentDecisions.length < old.decisions.length) return 'recorded decisions cannot be removed';
  for (let i = 0; i < old.decisions.length; i++) {
    if (!isDeepStrictEqual(normalise(sentDecisions[i]), normalise(old.decisions[i]))) {
      return `recorded decision ${i + 1} (by ${old.decisions[i]?.approver}) cannot be changed`;
    }
  }
  const added = sentDecisions.slice(old.decisions.length);
  if (added.length > 1) {
    return `${input.user.username} may add one decision, not ${added.length}: each approver decides once`;
  }
  if (added.length === 0) return [...old.decisions];
  const decision = addedDecision(input, old, added[0], warnings);
  return typeof decision === 'string' ? decision : [...old.decisions, decision];
}

/** The decision this caller adds, stamped with who they are; a string says why it is refused. */
function addedDecision(
  input: StampInput,
  old: ApprovalStatus,
  sentDecision: unknown,
  warnings: string[],
): ApprovalDecision | string {
  const { spec, user, now, settings } = input;
  const parsed = sentDecisionSchema.safeParse(sentDecision);
  if (!parsed.success) return `the new decision is not valid: ${issues(parsed.error)}`;
  if (terminal.has(old.phase)) return `the approval is already ${old.phase}; no further decisions are taken`;
  if (Date.parse(spec.expiresAt) <= now.getTime()) {
    return `the approval expired at ${spec.expiresAt}; no further decisions are taken`;
  }
  if (requesterUsernames(spec.requester, settings.requesterUsernamePrefixes).includes(user.username)) {
    return `${user.username} requested this call and cannot decide on their own request`;
  }
  if (!user.groups.some((group) => spec.approvers.groups.includes(group))) {
    return `${user.username} is not an approver of this request: it needs a member of ${spec.approvers.groups.join(', ')}`;
  }
  if (old.decisions.some((d) => d.approver === user.username)) {
    return `${user.username} has already decided on this request; each approver decides once`;
  }
  const stamped = sentDecision as { approver?: unknown };
  if (stamped.approver !== undefined && stamped.approver !== user.username) {
    warnings.push(`the approver is recorded as ${user.username}, the authenticated user, not as sent`);
  }
  return {
    approver: user.username,
    groups: [...user.groups],
    decision: parsed.data.decision,
    reason: parsed.data.reason,
    time: now.toISOString(),
  };
}

/**
 * The phase follows from the decisions; a terminal phase is never left. Only the
 * controller expires a request, and only a Pending one.
 */
function phaseAfter(
  spec: ApprovalSpec,
  old: ApprovalStatus,
  sent: SentStatus,
  decisions: readonly ApprovalDecision[],
  isController: boolean,
  warnings: string[],
): { phase: ApprovalStatus['phase']; refused?: undefined } | { refused: string } {
  const phase = terminal.has(old.phase) ? old.phase : phaseOf(decisions, spec.approvers.count);
  if (sent.phase === 'Expired' && old.phase !== 'Expired') {
    if (!isController) return { refused: 'only the Veil controller marks an approval Expired' };
    if (phase !== 'Pending') return { refused: `the approval is ${phase}; only a Pending approval expires` };
    return { phase: 'Expired' };
  }
  if (sent.phase !== undefined && sent.phase !== old.phase && sent.phase !== phase) {
    warnings.push(`the phase is computed from the decisions: ${phase}, not ${sent.phase}`);
  }
  return { phase };
}

/** When the approval was used: only the controller records it, once, on an Approved approval. */
function usedAtAfter(
  old: ApprovalStatus,
  sent: SentStatus,
  phase: ApprovalStatus['phase'],
  isController: boolean,
): { usedAt: string | undefined; refused?: undefined } | { refused: string } {
  if (sent.usedAt === old.usedAt) return { usedAt: old.usedAt };
  if (!isController) return { refused: 'only the Veil controller records the use of an approval' };
  if (old.usedAt !== undefined) return { refused: `the approval was already used at ${old.usedAt}` };
  if (phase !== 'Approved') return { refused: `the approval is ${phase}; only an Approved one can be used` };
  return { usedAt: sent.usedAt };
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
