// An approval from the side of the request it holds: opened for one caller and
// payload, read back while people decide, used once, or expired. The controller
// keeps approvals as Kubernetes objects and `veil dev` keeps them in memory; both
// apply these functions, so the two agree on what a sidecar may do with one.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { canonicalJson } from '../evidence/signing.ts';
import type { ApprovalRule } from '../policy/schema.ts';
import { type ApprovalSpec, type ApprovalStatus, approvalSpecSchema } from './schema.ts';

/** What a sidecar sends to open an approval: a masked summary and counts, never inputs. */
export const openApprovalSchema = z
  .object({
    policy: z.string().min(1).max(253),
    rule: z.string().min(1).max(63),
    pod: z.object({ name: z.string().min(1).max(253) }).strict(),
    requester: approvalSpecSchema.shape.requester,
    request: approvalSpecSchema.shape.request,
  })
  .strict();
export type OpenApprovalRequest = z.infer<typeof openApprovalSchema>;

/** Why an open request is refused, field by field, in words the sidecar can pass on to its caller. */
export function openProblems(error: z.ZodError): string {
  return error.issues.map((issue) => `${issue.path.join('.') || '(body)'}: ${issue.message}`).join('; ');
}

/**
 * What a sidecar sends to use an approval for the request in hand: who asks, the
 * digest of what it would forward, and everything about it approvers were shown.
 * Strict, and only the operation optional (as at open), so a use in an older
 * shape, which does not say what it holds, is refused.
 */
export const useApprovalSchema = z
  .object({
    // Groups may come along; only issuer and subject bind the approval.
    requester: z.object({ issuer: z.string().min(1), subject: z.string().min(1) }),
    digest: z.string().min(1),
    policy: approvalSpecSchema.shape.policy,
    rule: approvalSpecSchema.shape.rule,
    request: approvalSpecSchema.shape.request
      .pick({ model: true, inputCount: true, bytes: true, operation: true })
      // Any other API than the approval's is another payload, refused as such.
      .extend({ api: z.string().min(1) }),
  })
  .strict();
export type UseApprovalRequest = z.infer<typeof useApprovalSchema>;

/** One approval wherever it is kept. */
export type StoredApproval = {
  namespace: string;
  name: string;
  createdAt: string | undefined;
  spec: ApprovalSpec;
  status: ApprovalStatus;
};

/**
 * The spec of a new approval. Approver groups, count, expiry and single use come
 * from the rule the policy holds, never from the sidecar that asks.
 */
export function newApprovalSpec(
  open: OpenApprovalRequest,
  namespace: string,
  rule: ApprovalRule,
  now: Date,
): ApprovalSpec {
  return {
    requester: open.requester,
    policy: open.policy,
    rule: rule.name,
    ruleHash: approvalRuleHash(rule),
    pod: { namespace, name: open.pod.name },
    request: open.request,
    approvers: { groups: rule.approvers.groups, count: rule.approvers.count },
    expiresAt: new Date(now.getTime() + rule.expiresAfterSeconds * 1000).toISOString(),
    singleUse: rule.singleUse,
  };
}

/**
 * The approvals API's error for an approval it does not hold. The sidecar
 * reads exactly this to know the approval is gone: any other 404 (a wrong
 * URL, a proxy between) is a failure, not an answer about the approval.
 */
export function missingApprovalError(namespace: string, name: string): string {
  return `no EmbeddingApproval ${namespace}/${name}`;
}

/** A Pending approval whose time is up: the controller marks it Expired. */
export function expiryDue(spec: ApprovalSpec, status: ApprovalStatus, now: Date): boolean {
  return status.phase === 'Pending' && Date.parse(spec.expiresAt) <= now.getTime();
}

/** An approval that counts against its requester's `approvals.maxPendingPerCaller`: theirs, Pending, in time. */
export function countsAsPending(
  approval: { spec: ApprovalSpec; status: ApprovalStatus },
  requester: Pick<ApprovalSpec['requester'], 'issuer' | 'subject'>,
  now: Date,
): boolean {
  const { spec, status } = approval;
  return (
    spec.requester.issuer === requester.issuer &&
    spec.requester.subject === requester.subject &&
    status.phase === 'Pending' &&
    !expiryDue(spec, status, now)
  );
}

/**
 * Why an open is refused to a requester with `pending` approvals Pending under
 * `policy` (as the caller of this function names it); undefined when it may open one.
 */
export function pendingQuotaRefusal(
  pending: number,
  limit: number,
  namespace: string,
  policy: string,
): string | undefined {
  if (pending < limit) return undefined;
  return (
    `the requester has ${pending} approval(s) Pending in ${namespace}, and ${policy} allows ${limit} ` +
    '(approvals.maxPendingPerCaller); try again once one is decided or expires'
  );
}

/**
 * A settled approval kept `keepForMs` past its expiry: the controller deletes it.
 * Nothing can use it after its expiry, whatever its phase; a Pending one is
 * marked Expired first, so a decision in flight is never lost to the sweep.
 */
export function removalDue(
  spec: ApprovalSpec,
  status: ApprovalStatus,
  now: Date,
  keepForMs: number,
): boolean {
  return status.phase !== 'Pending' && Date.parse(spec.expiresAt) + keepForMs <= now.getTime();
}

/** `digest`: another payload, by its digest or by anything approvers were shown of it. */
export type UseRefusalReason = 'identity' | 'digest' | 'used' | Exclude<ApprovalStatus['phase'], 'Approved'>;

export type UseCheck =
  /** Usable; `markUsed`: record the use now, so a second one is refused. */
  | { ok: true; markUsed: boolean }
  | {
      ok: false;
      /** 403: not this caller's or not this payload's; 409: not usable now. */
      status: 403 | 409;
      reason: UseRefusalReason;
      error: string;
      /** Whether the answer should carry the approval, so the sidecar can wait on. */
      withApproval: boolean;
    };

/**
 * Whether the caller in hand may use the approval `name` for this payload. Pass
 * the status after any due expiry was applied.
 */
export function checkUse(
  name: string,
  approval: { spec: ApprovalSpec; status: ApprovalStatus },
  presented: UseApprovalRequest,
  now: Date,
): UseCheck {
  const { spec, status } = approval;
  if (
    spec.requester.issuer !== presented.requester.issuer ||
    spec.requester.subject !== presented.requester.subject
  ) {
    return refused(403, 'identity', `approval ${name} was granted to another caller`);
  }
  const differs = payloadDifference(spec, presented);
  if (differs !== undefined) {
    return refused(403, 'digest', `approval ${name} was granted for another payload (${differs} differs)`);
  }
  if (status.phase !== 'Approved') {
    return refused(409, status.phase, `approval ${name} is ${status.phase}`, true);
  }
  if (Date.parse(spec.expiresAt) <= now.getTime()) {
    return refused(409, 'Expired', `approval ${name} expired at ${spec.expiresAt}`);
  }
  if (spec.singleUse && status.usedAt !== undefined) {
    return refused(409, 'used', `approval ${name} was already used at ${status.usedAt}`);
  }
  return { ok: true, markUsed: spec.singleUse };
}

/**
 * The first thing the approval was granted for that the use does not match. The
 * digest alone binds the payload, but approvers decided on the policy, rule and
 * counts the opener wrote; an opener that wrote others (any injected pod of
 * the namespace may call the approvals API) must not have them approve a payload
 * they never saw described.
 */
function payloadDifference(spec: ApprovalSpec, presented: UseApprovalRequest): string | undefined {
  if (spec.request.digest !== presented.digest) return 'digest';
  if (spec.policy !== presented.policy) return 'policy';
  if (spec.rule !== presented.rule) return 'rule';
  const shown = useApprovalSchema.shape.request.keyof().options;
  return shown.find((field) => spec.request[field] !== presented.request[field]);
}

/**
 * The content of an approval rule as a hash (SHA-256 of its RFC 8785 canonical
 * JSON, defaults applied), recorded when an approval is opened: a rule is known
 * by its name, and a name outlives edits to what it demands.
 */
export function approvalRuleHash(rule: ApprovalRule): string {
  return `sha256:${createHash('sha256').update(canonicalJson(rule), 'utf8').digest('hex')}`;
}

/** A use refused because the rule the approval was opened under has changed since, or is gone. */
export type RuleRefusal = { ok: false; status: 409; reason: 'rule'; error: string; withApproval: false };

/**
 * Why an approval cannot be used under the rule now in force, or undefined when
 * that rule is the one it was opened under. Approvers granted it under the rule
 * as it was (how many, from which groups, for what); once the rule is edited or
 * removed, the grant no longer says what the policy now demands. The spec's
 * `ruleHash` is taken at opening; an approval without one (opened before hashes
 * were recorded) cannot be matched and is refused too.
 */
export function ruleChangeRefusal(
  name: string,
  spec: Pick<ApprovalSpec, 'policy' | 'rule' | 'ruleHash'>,
  current: ApprovalRule | undefined,
): RuleRefusal | undefined {
  const recorded = spec.ruleHash;
  const where = `rule ${spec.rule} of EmbeddingPolicy ${spec.policy}`;
  const why =
    current === undefined
      ? `${where} no longer exists`
      : recorded === undefined
        ? `approval ${name} does not record which version of ${where} it was opened under`
        : recorded !== approvalRuleHash(current)
          ? `${where} has changed since approval ${name} was opened`
          : undefined;
  if (why === undefined) return undefined;
  return {
    ok: false,
    status: 409,
    reason: 'rule',
    error: `approval ${name} cannot be used: ${why}; send the request again without the approval to ask anew`,
    withApproval: false,
  };
}

/** A use that could not be marked: refused as now unusable, or to be tried again. */
export type MarkFailure =
  | Extract<UseCheck, { ok: false }>
  | { ok: false; status: 503; reason: 'unavailable'; error: string; withApproval: false };

/**
 * The answer to a use checkUse allowed but whose mark could not be written,
 * judged again on the approval as read after the failure (undefined: it could
 * not be read). A use that won the race meanwhile makes this one refused as
 * `used`; otherwise the write failed for another reason (the API server or a
 * webhook erred, something else changed the object) and nothing was used, so
 * the caller is told to retry rather than refused.
 */
export function markFailure(
  name: string,
  current: { spec: ApprovalSpec; status: ApprovalStatus } | undefined,
  presented: UseApprovalRequest,
  now: Date,
): MarkFailure {
  const check = current === undefined ? undefined : checkUse(name, current, presented, now);
  if (check !== undefined && !check.ok) return check;
  return {
    ok: false,
    status: 503,
    reason: 'unavailable',
    error: `approval ${name} could not be marked used, and was not used; retry`,
    withApproval: false,
  };
}

function refused(status: 403 | 409, reason: UseRefusalReason, error: string, withApproval = false): UseCheck {
  return { ok: false, status, reason, error, withApproval };
}

/** What a sidecar reads back: the decision, never anything it did not send. */
export type ApprovalView = {
  namespace: string;
  name: string;
  phase: ApprovalStatus['phase'];
  expiresAt: string;
  requestedAt: string | undefined;
  decidedAt: string | undefined;
  usedAt: string | undefined;
  singleUse: boolean;
  holdTimeoutSeconds: number | undefined;
  mode: 'hold' | 'deferred' | undefined;
  decisions: { approver: string; decision: 'approve' | 'deny'; reason: string; time: string }[];
};

/** `rule`: the policy's rule as it stands now, if it still exists. */
export function approvalView(
  approval: StoredApproval,
  rule: Pick<ApprovalRule, 'holdTimeoutSeconds' | 'mode'> | undefined,
): ApprovalView {
  return {
    namespace: approval.namespace,
    name: approval.name,
    phase: approval.status.phase,
    expiresAt: approval.spec.expiresAt,
    requestedAt: approval.createdAt,
    decidedAt: approval.status.decidedAt,
    usedAt: approval.status.usedAt,
    singleUse: approval.spec.singleUse,
    holdTimeoutSeconds: rule?.holdTimeoutSeconds,
    mode: rule?.mode,
    decisions: approval.status.decisions.map(({ approver, decision, reason, time }) => ({
      approver,
      decision,
      reason,
      time,
    })),
  };
}
