// OpenID Connect discovery, reduced to what verification needs: where the
// issuer publishes its keys. The document must name the configured issuer
// exactly, so a proxy or a misrouted request cannot lend us another IdP's keys.
import { isTrustedTransport } from '@veil/core';
import { z } from 'zod';
import type { HttpClient } from './httpclient.ts';
import { AuthError } from './identity.ts';

const discoveryDocumentSchema = z.looseObject({
  issuer: z.string().min(1),
  jwks_uri: z.string().min(1),
});

export function discoveryUrl(issuer: string): URL {
  return new URL(`${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`);
}

export async function discoverJwksUri(issuer: string, http: HttpClient): Promise<URL> {
  const url = discoveryUrl(issuer);
  const parsed = discoveryDocumentSchema.safeParse(await http.getJson(url.href));
  if (!parsed.success)
    throw new AuthError('jwks_unavailable', `discovery at ${url.href} lacks issuer or jwks_uri`);
  if (parsed.data.issuer !== issuer) {
    throw new AuthError('jwks_unavailable', `discovery at ${url.href} names another issuer`);
  }
  let jwksUri: URL;
  try {
    jwksUri = new URL(parsed.data.jwks_uri);
  } catch {
    throw new AuthError('jwks_unavailable', `discovery at ${url.href} has an invalid jwks_uri`);
  }
  if (!isTrustedTransport(jwksUri)) {
    throw new AuthError('jwks_unavailable', `discovery at ${url.href} names a jwks_uri that is not https`);
  }
  http.credit(jwksUri);
  return jwksUri;
}
