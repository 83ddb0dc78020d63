// Full verification of one token with jose, and the translation of jose's
// errors into stable reason codes. Shared by the OIDC and service-account
// verifiers, which differ only in how verified claims become an identity.
import { errors, type JWTPayload, type JWTVerifyGetKey, jwtVerify } from 'jose';
import { AuthError, type AuthFailureCode, type Identity } from './identity.ts';

/** Beyond five minutes, skew stops being clock drift and starts being a replay window. */
export const MAX_CLOCK_SKEW_SECONDS = 300;

export interface JwtRequirements {
  issuer: string;
  audiences: readonly string[];
  /** Asymmetric algorithms only; the policy schema admits no `none` and no HMAC. */
  algorithms: readonly string[];
  clockSkewSeconds: number;
}

export type VerifiedClaims = JWTPayload & { exp: number; sub: string };

export interface VerifiedToken {
  identity: Identity;
  /** The `exp` claim, in seconds since the epoch. */
  expiresAt: number;
}

/** Verifies the tokens of one issuer. */
export interface TokenVerifier {
  readonly issuer: string;
  verify(token: string, now: Date): Promise<VerifiedToken>;
}

export async function verifyJwt(
  token: string,
  getKey: JWTVerifyGetKey,
  requirements: JwtRequirements,
  now: Date,
): Promise<VerifiedClaims> {
  const clockTolerance = Math.min(Math.max(requirements.clockSkewSeconds, 0), MAX_CLOCK_SKEW_SECONDS);
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, getKey, {
      issuer: requirements.issuer,
      audience: [...requirements.audiences],
      algorithms: [...requirements.algorithms],
      clockTolerance,
      requiredClaims: ['exp', 'sub'],
      currentDate: now,
    }));
  } catch (error) {
    throw toAuthError(error);
  }
  // jose checks a future `iat` only along with a maximum token age, and then
  // requires the claim, which not every issuer sends.
  if (payload.iat !== undefined && payload.iat > Math.floor(now.getTime() / 1000) + clockTolerance) {
    throw new AuthError('invalid_claims', '"iat" claim timestamp check failed (it should be in the past)');
  }
  if (typeof payload.sub !== 'string' || payload.sub === '') {
    throw new AuthError('invalid_claims', '"sub" claim must be a non-empty string');
  }
  return payload as VerifiedClaims;
}

export function toAuthError(error: unknown): AuthError {
  if (error instanceof AuthError) return error;
  if (error instanceof errors.JOSEError) {
    return new AuthError(reasonFor(error), error.message, { cause: error });
  }
  // Anything jose did not classify still refuses the caller.
  return new AuthError('verification_failed', 'token could not be verified', { cause: error });
}

function reasonFor(error: InstanceType<typeof errors.JOSEError>): AuthFailureCode {
  if (error instanceof errors.JWTExpired) return error.claim === 'exp' ? 'expired' : 'invalid_claims';
  if (error instanceof errors.JWTClaimValidationFailed) return claimReason(error.claim, error.reason);
  if (error instanceof errors.JWSSignatureVerificationFailed) return 'bad_signature';
  if (error instanceof errors.JOSEAlgNotAllowed) return 'alg_not_allowed';
  if (error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys) {
    return 'unknown_kid';
  }
  if (error instanceof errors.JWSInvalid || error instanceof errors.JWTInvalid) return 'malformed_token';
  if (error instanceof errors.JOSENotSupported) return 'malformed_token';
  if (error instanceof errors.JWKSTimeout || error instanceof errors.JWKSInvalid) return 'jwks_unavailable';
  if (error instanceof errors.JWKInvalid) return 'jwks_unavailable';
  return 'verification_failed';
}

function claimReason(claim: string, reason: string): AuthFailureCode {
  if (claim === 'aud') return 'wrong_audience';
  if (claim === 'nbf' && reason === 'check_failed') return 'not_yet_valid';
  if (claim === 'iss') return 'unknown_issuer';
  return 'invalid_claims';
}
