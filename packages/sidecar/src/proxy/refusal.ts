import type { RecordOutcome } from '@veil/core';
import type { AuthFailure } from '../auth/identity.ts';
import { type Dialect, DialectError, type ErrorCode } from '../dialects/index.ts';
import { BodyTimeoutError, CallerGoneError } from './body.ts';
import { BodyBudgetError } from './body-budget.ts';
import type { ProxyReply } from './pipeline.ts';

export const JSON_HEADERS = { 'content-type': 'application/json' };

/** A refusal: the request ends here with this status, in the caller's dialect. */
export class Refusal {
  readonly status: number;
  readonly code: ErrorCode;
  readonly outcome: RecordOutcome;
  readonly message: string;
  readonly headers: Record<string, string>;
  /** The request field at fault, for dialects whose errors name it. */
  readonly param: string | null;
  /** What the record says; more than the caller is told where that would tell of the inside. */
  readonly detail: string;
  constructor(
    status: number,
    code: ErrorCode,
    outcome: RecordOutcome,
    message: string,
    headers = {},
    param: string | null = null,
    detail = message,
  ) {
    this.status = status;
    this.code = code;
    this.outcome = outcome;
    this.message = message;
    this.headers = headers;
    this.param = param;
    this.detail = detail;
  }
}

/**
 * A caller whose token did not pass. The caller hears the reason, its code
 * first as in the record, so the two can be matched; the record also keeps
 * what went wrong on the way to the issuer (its addresses, network errors),
 * which is no business of an unauthenticated caller. The challenge is RFC
 * 6750's, in every dialect: SDKs and gateways read it, not the body.
 */
export function unauthenticated(failure: AuthFailure): Refusal {
  const challenge = failure.tokenPresented ? 'Bearer error="invalid_token"' : 'Bearer';
  return new Refusal(
    401,
    'unauthenticated',
    'unauthenticated',
    `(${failure.reason}) ${failure.message}`,
    { 'www-authenticate': challenge },
    null,
    `(${failure.reason}) ${failure.detail}`,
  );
}

export function toRefusal(thrown: unknown): Refusal {
  if (thrown instanceof Refusal) return thrown;
  if (thrown instanceof DialectError) {
    const outcome: RecordOutcome = thrown.status === 400 ? 'invalid' : 'upstream_error';
    return new Refusal(
      thrown.status,
      thrown.status === 400 ? 'invalid_request' : 'upstream_error',
      outcome,
      thrown.message,
      {},
      thrown.param,
      thrown.detail,
    );
  }
  // Nobody hears this answer (499, as for a held caller gone): it is what the record says happened.
  if (thrown instanceof CallerGoneError)
    return new Refusal(499, 'invalid_request', 'invalid', thrown.message);
  // The rest of the body may still come, or never: the connection is not kept
  // for another request.
  if (thrown instanceof BodyTimeoutError)
    return new Refusal(408, 'invalid_request', 'invalid', thrown.message, { connection: 'close' });
  // Other callers' bodies fill the proxy's memory for now, not this caller's fault.
  if (thrown instanceof BodyBudgetError)
    return new Refusal(503, 'unavailable', 'unavailable', thrown.message, { 'retry-after': '1' });
  // Anything unforeseen (a masking failure included) fails closed.
  return new Refusal(500, 'internal', 'unavailable', 'internal error; the request was not forwarded');
}

export function refusalReply(dialect: Dialect, refusal: Refusal): ProxyReply {
  return {
    status: refusal.status,
    headers: { ...JSON_HEADERS, ...refusal.headers },
    body: JSON.stringify(dialect.errorBody(refusal.status, refusal.code, refusal.message, refusal.param)),
  };
}
