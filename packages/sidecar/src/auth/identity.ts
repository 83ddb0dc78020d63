// The caller identity the rest of the request path (access rules, limits,
// approvals, audit records) relies on, and the stable reasons a caller is
// refused. Reason codes are told to the caller and recorded in audit evidence,
// so they are a contract.
import { z } from 'zod';

export const identityKinds = ['oidc', 'serviceaccount'] as const;

export const identitySchema = z
  .object({
    issuer: z.string().min(1),
    subject: z.string().min(1),
    groups: z.array(z.string()),
    kind: z.enum(identityKinds),
  })
  .strict();

export type Identity = z.infer<typeof identitySchema>;

export const authFailureCodes = [
  'missing_token',
  'malformed_token',
  'unknown_issuer',
  'bad_signature',
  'expired',
  'not_yet_valid',
  'wrong_audience',
  'unknown_kid',
  'alg_not_allowed',
  'invalid_claims',
  'jwks_unavailable',
  'verification_failed',
] as const;

export const authFailureCodeSchema = z.enum(authFailureCodes);

export type AuthFailureCode = z.infer<typeof authFailureCodeSchema>;

export type AuthFailure = {
  ok: false;
  reason: AuthFailureCode;
  /** For the caller, who may be anyone: it names no URL or network error of the issuer's. */
  message: string;
  /** For the audit record and logs: the full reason, the issuer's URLs and errors included. */
  detail: string;
  /** The caller sent a bearer token (RFC 6750 then has it told `invalid_token`), not none or another scheme. */
  tokenPresented: boolean;
};

export type AuthResult = { ok: true; identity: Identity } | AuthFailure;

/** Thrown inside the auth module to carry a reason code up to the authenticator. */
export class AuthError extends Error {
  readonly reason: AuthFailureCode;

  constructor(reason: AuthFailureCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'AuthError';
    this.reason = reason;
  }
}

/**
 * Failing to reach the issuer's keys is no fault of the token's, and its detail
 * (internal URLs, addresses, network errors) would map the sidecar's network
 * for anyone who sends a token: the caller learns only that the keys were
 * unavailable. A failure nobody classified is told as such, its cause kept for
 * the record. Every other reason is about the token the caller sent.
 */
export function authFailure(reason: AuthFailureCode, detail: string, tokenPresented = true): AuthFailure {
  return { ok: false, reason, message: callerMessage(reason, detail), detail, tokenPresented };
}

function callerMessage(reason: AuthFailureCode, detail: string): string {
  if (reason === 'jwks_unavailable')
    return "the token could not be verified: the issuer's keys are unavailable";
  if (reason === 'verification_failed') return 'the token could not be verified';
  return detail;
}
