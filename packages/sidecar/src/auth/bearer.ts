// Reads the bearer token out of an Authorization header and peeks at its
// unverified issuer. Nothing read here is trusted: the issuer only chooses which
// key set the token is then fully verified against.
import { decodeJwt } from 'jose';
import { AuthError } from './identity.ts';

/** Far above any real IdP or Kubernetes token; bounds the work an oversized header can cause. */
export const MAX_TOKEN_LENGTH = 16 * 1024;

const BEARER = /^bearer(?:[ \t]+(.*))?$/is;
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** Returns the compact JWS from `Authorization: Bearer <token>`, or throws an AuthError. */
export function readBearerToken(authorizationHeader: string | undefined): string {
  const header = authorizationHeader?.trim() ?? '';
  if (header === '') throw new AuthError('missing_token', 'no Authorization header');
  const match = BEARER.exec(header);
  if (!match) throw new AuthError('malformed_token', 'Authorization header is not a Bearer credential');
  const token = match[1]?.trim() ?? '';
  if (token === '') throw new AuthError('missing_token', 'Bearer credential is empty');
  if (token.length > MAX_TOKEN_LENGTH) throw new AuthError('malformed_token', 'bearer token is too long');
  if (!COMPACT_JWS.test(token)) throw new AuthError('malformed_token', 'bearer token is not a compact JWT');
  return token;
}

/**
 * The header carries a Bearer credential, however malformed: RFC 6750 tells
 * such a caller its token is invalid, and one that sent none (or another
 * scheme) only that a bearer token is wanted.
 */
export function presentsBearerToken(authorizationHeader: string | undefined): boolean {
  const match = BEARER.exec(authorizationHeader?.trim() ?? '');
  return (match?.[1]?.trim() ?? '') !== '';
}

/** The `iss` claim as written in the token, before any verification. */
export function peekIssuer(token: string): string {
  let payload: Record<string, unknown>;
  try {
    payload = decodeJwt(token);
  } catch {
    throw new AuthError('malformed_token', 'token payload is not a JSON object');
  }
  const issuer = payload.iss;
  if (typeof issuer !== 'string' || issuer === '')
    throw new AuthError('unknown_issuer', 'token names no issuer');
  return issuer;
}
