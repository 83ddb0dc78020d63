// Full verification of one token with jose, and the translation of jose's
// errors into stable reason codes. Shared by the OIDC and service-account
// verifiers, which differ only in how verified claims become an identity.
import {
  type CryptoKey,
  errors,
  type JWTPayload,
  type JWTVerifyGetKey,
  type JWTVerifyOptions,
  jwtVerify,
} from 'jose';
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
  const payload = await verifiedPayload(token, getKey, {
    issuer: requirements.issuer,
    audience: [...requirements.audiences],
    algorithms: [...requirements.algorithms],
    clockTolerance,
    requiredClaims: ['exp', 'sub'],
    currentDate: now,
  });
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

async function verifiedPayload(
  token: string,
  getKey: JWTVerifyGetKey,
  options: JWTVerifyOptions,
): Promise<JWTPayload> {
  try {
    return (await jwtVerify(token, getKey, options)).payload;
  } catch (error) {
    if (error instanceof errors.JWKSMultipleMatchingKeys) return verifiedByAnyOf(token, error, options);
    throw isKeyFailure(error) ? unusableKey(error) : toAuthError(error);
  }
}

/**
 * Several published keys match the token: a kid the IdP published twice (RFC
 * 7517 only says kids SHOULD be unique), or no kid and several keys of its
 * algorithm. jose leaves the choice to the application: each candidate is
 * tried under the same options, the algorithm allow-list included, until one
 * verifies. Any verdict other than a bad signature comes after the signature
 * verified, so it is the token's and stands.
 */
async function verifiedByAnyOf(
  token: string,
  candidates: AsyncIterable<CryptoKey>,
  options: JWTVerifyOptions,
): Promise<JWTPayload> {
  let badSignatures = 0;
  let unusable: unknown;
  for await (const key of candidates) {
    try {
      return (await jwtVerify(token, key, options)).payload;
    } catch (error) {
      if (error instanceof errors.JWSSignatureVerificationFailed) badSignatures += 1;
      else if (isKeyFailure(error)) unusable = error;
      else throw toAuthError(error);
    }
  }
  if (badSignatures > 0) {
    throw new AuthError(
      'bad_signature',
      `none of the ${badSignatures} published keys that match the token's header verifies its signature`,
    );
  }
  // jose leaves out candidates it cannot import, so none may have come at all.
  throw unusableKey(unusable ?? new Error('none of the matching keys could be imported'));
}

/**
 * Not jose's own error: jose lets the platform's errors through when a key
 * cannot be imported or used (an RSA key under 2048 bits, a malformed JWK).
 */
function isKeyFailure(error: unknown): boolean {
  return !(error instanceof AuthError) && !(error instanceof errors.JOSEError);
}

/** A key the issuer published but nothing can verify with is no fault of the token's, as keys that cannot be fetched. */
function unusableKey(error: unknown): AuthError {
  const detail = `the issuer's key for this token cannot be used: ${causeOf(error)}`;
  return new AuthError('jwks_unavailable', detail, { cause: error });
}

export function toAuthError(error: unknown): AuthError {
  if (error instanceof AuthError) return error;
  if (error instanceof errors.JOSEError) {
    return new AuthError(reasonFor(error), error.message, { cause: error });
  }
  // Anything jose did not classify still refuses the caller; the record keeps why.
  return new AuthError('verification_failed', `token could not be verified: ${causeOf(error)}`, {
    cause: error,
  });
}

/** Platform and jose messages are a short line; anything longer is cut, not carried whole into the record. */
const MAX_CAUSE_LENGTH = 200;

/**
 * The error's kind and first line, for the audit record. Platform and jose
 * messages name parameters and sizes, never key material or the token.
 */
function causeOf(error: unknown): string {
  if (!(error instanceof Error)) return typeof error;
  const line = error.message.split('\n', 1)[0] ?? '';
  return `${error.name}: ${line}`.slice(0, MAX_CAUSE_LENGTH);
}

function reasonFor(error: InstanceType<typeof errors.JOSEError>): AuthFailureCode {
  if (error instanceof errors.JWTExpired) return error.claim === 'exp' ? 'expired' : 'invalid_claims';
  if (error instanceof errors.JWTClaimValidationFailed) return claimReason(error.claim, error.reason);
  if (error instanceof errors.JWSSignatureVerificationFailed) return 'bad_signature';
  if (error instanceof errors.JOSEAlgNotAllowed) return 'alg_not_allowed';
  if (error instanceof errors.JWKSNoMatchingKey) return 'unknown_kid';
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
