// Step 1 of the request path: turn `Authorization: Bearer <JWT>` into an
// identity, or a stable reason for refusing it. The unverified `iss` only picks
// the issuer whose keys and rules then verify the token in full. Verified
// tokens are remembered briefly so a caller's repeated token costs one hash.
import { hash } from 'node:crypto';
import { authenticationSchema, type PolicySpec } from '@veil/core';
import type { Dispatcher } from 'undici';
import { peekIssuer, presentsBearerToken, readBearerToken } from './bearer.ts';
import { createHttpClient, type HttpClient, type OriginCredentials } from './httpclient.ts';
import { type AuthResult, authFailure, type Identity } from './identity.ts';
import { createKeySource } from './jwks.ts';
import { type TokenVerifier, toAuthError } from './jwt.ts';
import { createOidcVerifier } from './oidc.ts';
import { createServiceAccountVerifier } from './serviceaccount.ts';
import { createTokenCache } from './tokencache.ts';

export const DEFAULT_JWKS_REFRESH_MIN_INTERVAL_MS = 30_000;
export const DEFAULT_TOKEN_CACHE_MAX_ENTRIES = 10_000;
/** A verified token is trusted without re-verification for at most this long. */
export const TOKEN_CACHE_TTL_MS = 60_000;

export type AuthenticationConfig = PolicySpec['authentication'];

export interface AuthenticatorOptions {
  /** HTTP client for discovery and JWKS; defaults to undici's global dispatcher. */
  dispatcher?: Dispatcher;
  /** PEM CA bundle per issuer URL, for issuers such as the kube-apiserver that serve HTTPS with their own CA. */
  issuerCa?: Readonly<Record<string, string>>;
  /**
   * Bearer token per issuer URL, presented when reading that issuer's discovery
   * and JWKS: the kube-apiserver serves them to authenticated service accounts
   * only. Used only when the policy names the issuer in serviceAccountTokens,
   * never for OIDC issuers, and sent only to the issuer's own origin. Called per
   * request, as projected tokens rotate.
   */
  serviceAccountCredentials?: Readonly<Record<string, () => string | Promise<string>>>;
  /** Minimum time between key set refreshes triggered by unknown kids. */
  jwksRefreshMinIntervalMs?: number;
  tokenCacheMaxEntries?: number;
  /** Clock for token validity and the verified-token cache, in ms since the epoch. */
  now?: () => number;
}

export interface AuthenticatorStats {
  /** Tokens that went through full verification. */
  verifications: number;
  /** Requests answered from the verified-token cache. */
  cacheHits: number;
  cachedTokens: number;
}

export interface Authenticator {
  /** Never throws: every outcome is an AuthResult, so a refusal can be recorded. */
  authenticate(authorizationHeader: string | undefined): Promise<AuthResult>;
  stats(): AuthenticatorStats;
  close(): Promise<void>;
}

/** The authentication section cannot be enforced as written. */
export class AuthConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AuthConfigError';
  }
}

export function createAuthenticator(
  config: AuthenticationConfig,
  options: AuthenticatorOptions = {},
): Authenticator {
  const now = options.now ?? Date.now;
  const clients: HttpClient[] = [];
  // Parsed again for configurations built past the policy schema: its rules (one
  // issuer once, a discoverable service-account issuer) hold here too.
  const verifiers = buildVerifiers(authenticationSchema.parse(config), options, clients);
  const cache = createTokenCache({
    maxEntries: options.tokenCacheMaxEntries ?? DEFAULT_TOKEN_CACHE_MAX_ENTRIES,
    maxTtlMs: TOKEN_CACHE_TTL_MS,
  });
  // Concurrent first requests with the same token share one verification.
  const inflight = new Map<string, Promise<AuthResult>>();
  let verifications = 0;
  let cacheHits = 0;

  async function verify(token: string, digest: string): Promise<AuthResult> {
    try {
      const verifier = verifiers.get(peekIssuer(token));
      if (verifier === undefined)
        return authFailure('unknown_issuer', 'token issuer is not trusted by this policy');
      verifications += 1;
      const verified = await verifier.verify(token, new Date(now()));
      const identity = sealed(verified.identity);
      cache.set(digest, identity, verified.expiresAt * 1000, now());
      return { ok: true, identity };
    } catch (error) {
      const { reason, message } = toAuthError(error);
      return authFailure(reason, message);
    }
  }

  return {
    async authenticate(authorizationHeader) {
      let token: string;
      try {
        token = readBearerToken(authorizationHeader);
      } catch (error) {
        const { reason, message } = toAuthError(error);
        return authFailure(reason, message, presentsBearerToken(authorizationHeader));
      }
      const digest = hash('sha256', token, 'hex');
      const cached = cache.get(digest, now());
      if (cached !== undefined) {
        cacheHits += 1;
        return { ok: true, identity: cached };
      }
      let pending = inflight.get(digest);
      if (pending === undefined) {
        pending = verify(token, digest).finally(() => inflight.delete(digest));
        inflight.set(digest, pending);
      }
      return pending;
    },
    stats() {
      return { verifications, cacheHits, cachedTokens: cache.size };
    },
    async close() {
      cache.clear();
      await Promise.all(clients.map((client) => client.close()));
    },
  };
}

function buildVerifiers(
  config: AuthenticationConfig,
  options: AuthenticatorOptions,
  clients: HttpClient[],
): Map<string, TokenVerifier> {
  const refreshMinIntervalMs = options.jwksRefreshMinIntervalMs ?? DEFAULT_JWKS_REFRESH_MIN_INTERVAL_MS;
  const keySource = (issuer: string, jwksUri: string | undefined, credentials?: OriginCredentials) => {
    const http = createHttpClient({
      dispatcher: options.dispatcher,
      ca: options.issuerCa?.[issuer],
      credentials,
    });
    clients.push(http);
    return createKeySource({ issuer, jwksUri, http, refreshMinIntervalMs });
  };
  const verifiers = new Map<string, TokenVerifier>();
  const add = (verifier: TokenVerifier) => {
    // One issuer, one set of rules: two would leave it to chance which audience or groups claim applies.
    if (verifiers.has(verifier.issuer))
      throw new AuthConfigError(`issuer ${verifier.issuer} is configured twice`);
    verifiers.set(verifier.issuer, verifier);
  };
  for (const issuer of config.oidc) {
    add(createOidcVerifier(issuer, keySource(issuer.issuer, issuer.jwksUri), config.clockSkewSeconds));
  }
  const serviceAccounts = config.serviceAccountTokens;
  if (serviceAccounts !== undefined) {
    const { issuer, jwksUri } = serviceAccounts;
    const keys = keySource(issuer, jwksUri, issuerCredentials(issuer, options.serviceAccountCredentials));
    add(createServiceAccountVerifier(serviceAccounts, keys, config.clockSkewSeconds));
  }
  return verifiers;
}

/** Only an issuer the caller vouched for by name gets the pod's token: a policy may name any issuer. */
function issuerCredentials(
  issuer: string,
  credentials: AuthenticatorOptions['serviceAccountCredentials'],
): OriginCredentials | undefined {
  const token =
    credentials !== undefined && Object.hasOwn(credentials, issuer) ? credentials[issuer] : undefined;
  const origin = URL.parse(issuer)?.origin;
  return token === undefined || origin === undefined ? undefined : { origin, token };
}

/** Identities are shared between cached requests, so none of them may change one. */
function sealed(identity: Identity): Identity {
  Object.freeze(identity.groups);
  return Object.freeze(identity);
}
