// Policy authentication sections for the auth tests, built through the real
// schema so defaults are the ones a deployed policy gets.
import { authenticationSchema, type OidcIssuer, type PolicySpec } from '@veil/core';

export const AUDIENCE = 'veil-api';
export const GROUPS_CLAIM = 'https://veil.dev/groups';

export function oidcAuth(
  issuer: string,
  overrides: Partial<OidcIssuer> = {},
  clockSkewSeconds = 30,
): PolicySpec['authentication'] {
  return authenticationSchema.parse({
    oidc: [{ issuer, audiences: [AUDIENCE], groupsClaim: GROUPS_CLAIM, ...overrides }],
    clockSkewSeconds,
  });
}

export function bearer(token: string): string {
  return `Bearer ${token}`;
}
