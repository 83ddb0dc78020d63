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

const MAX_NAMED_ISSUER_LENGTH = 200;

export function discoveryUrl(issuer: string): URL {
  return new URL(`${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`);
}

export async function discoverJwksUri(issuer: string, http: HttpClient): Promise<URL> {
  const url = discoveryUrl(issuer);
  const parsed = discoveryDocumentSchema.safeParse(await http.getJson(url.href));
  if (!parsed.success)
    throw new AuthError('jwks_unavailable', `discovery at ${url.href} lacks issuer or jwks_uri`);
  // The issuer the document names is public, and what an operator needs to
  // set the policy's issuer to (a cluster's service-account issuer is easily
  // mistaken); cut short, as the document is the IdP's to write.
  if (parsed.data.issuer !== issuer) {
    const named = JSON.stringify(parsed.data.issuer.slice(0, MAX_NAMED_ISSUER_LENGTH));
    throw new AuthError('jwks_unavailable', `discovery at ${url.href} names another issuer: ${named}`);
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
