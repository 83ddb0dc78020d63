// Tokens from an OpenID Connect issuer named in the policy: keys by discovery
// (or the configured jwksUri), groups from the configured claim.
import type { OidcIssuer } from '@veil/core';
import type { JWTPayload } from 'jose';
import { AuthError } from './identity.ts';
import type { KeySource } from './jwks.ts';
import { type TokenVerifier, verifyJwt } from './jwt.ts';

export function createOidcVerifier(
  config: OidcIssuer,
  keys: KeySource,
  clockSkewSeconds: number,
): TokenVerifier {
  const requirements = {
    issuer: config.issuer,
    audiences: config.audiences,
    algorithms: config.algorithms,
    clockSkewSeconds,
  };
  return {
    issuer: config.issuer,
    async verify(token, now) {
      const claims = await verifyJwt(token, keys.getKey, requirements, now);
      const groups = groupsFrom(claims, config.groupsClaim);
      refuseReservedNames(claims.sub, groups, config.groupsClaim);
      return {
        identity: { issuer: config.issuer, subject: claims.sub, groups, kind: 'oidc' },
        expiresAt: claims.exp,
      };
    },
  };
}

/**
 * Reads groups from a top-level claim. Claim names are taken literally, since
 * IdPs use URLs as claim names and those contain dots. A single string counts
 * as one group (some IdPs flatten one-element lists); any other shape is refused
 * rather than guessed at, because access rules match on groups.
 */
export function groupsFrom(claims: JWTPayload, claim: string): string[] {
  // A distributed claim (Azure AD's groups overage: too many groups, so only
  // a reference to them is sent). Taken as "no groups", the caller would slip
  // past every deny rule and approval rule that names one of its groups.
  if (namesClaim(claims._claim_names, claim)) {
    throw new AuthError(
      'invalid_claims',
      `the "${claim}" claim is only available by reference (_claim_names), not in the token`,
    );
  }
  const value = claims[claim];
  // The other form of the overage (implicit flow): `hasgroups` says groups
  // exist that the token leaves out.
  if (value === undefined && (claims.hasgroups === true || claims.hasgroups === 'true')) {
    throw new AuthError(
      'invalid_claims',
      `the token says the caller has groups (hasgroups) but carries no "${claim}" claim`,
    );
  }
  if (value === undefined) return [];
  if (typeof value === 'string') return [value];
  if (Array.isArray(value) && value.every((group): group is string => typeof group === 'string'))
    return [...value];
  throw new AuthError('invalid_claims', `"${claim}" claim must be a string or an array of strings`);
}

function namesClaim(claimNames: unknown, claim: string): boolean {
  return typeof claimNames === 'object' && claimNames !== null && Object.hasOwn(claimNames, claim);
}

/** Kubernetes names its users and groups `system:…`; rules written for service accounts use them. */
const RESERVED_PREFIX = 'system:';

/**
 * An OIDC issuer may let its users pick a subject or a group name: one named
 * `system:serviceaccounts:ml` would match every rule written for that
 * namespace's service accounts. Only the service-account verifier, which reads
 * them from the API server's own claim, gives such names.
 */
function refuseReservedNames(subject: string, groups: readonly string[], claim: string): void {
  if (subject.startsWith(RESERVED_PREFIX)) {
    throw new AuthError(
      'invalid_claims',
      `"sub" uses the prefix "${RESERVED_PREFIX}", reserved for Kubernetes service accounts`,
    );
  }
  if (groups.some((group) => group.startsWith(RESERVED_PREFIX))) {
    throw new AuthError(
      'invalid_claims',
      `the "${claim}" claim names a group with the prefix "${RESERVED_PREFIX}", reserved for Kubernetes service accounts`,
    );
  }
}
