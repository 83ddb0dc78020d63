/** The controller could not be asked, or answered something unusable: fail closed. */
export class ControllerUnavailableError extends Error {
  override name = 'ControllerUnavailableError';
}

/** The controller has no such approval (any more): the sweep deleted it, or it never was. */
export class ApprovalGoneError extends ControllerUnavailableError {
  override name = 'ApprovalGoneError';
  readonly status = 404;
}

/** A refusal of `wait` because the approval does not exist, by any ApprovalsClient. */
export function isApprovalGone(error: unknown): boolean {
  return (error as { status?: unknown } | undefined)?.status === 404;
}

/** The requester has as many approvals Pending as the policy allows: none is opened. */
export class PendingQuotaError extends Error {
  override name = 'PendingQuotaError';
  readonly status = 429;
}

/** A refusal of `open` for the requester's quota, by any ApprovalsClient. */
export function isPendingQuota(error: unknown): boolean {
  return (error as { status?: unknown } | undefined)?.status === 429;
}
