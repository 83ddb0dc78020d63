// One issuer's signing keys: the JWKS URI (configured, or found once by
// discovery) and a jose remote key set that is cached and refreshed when a
// token names a kid it does not hold. Refreshes are rate limited twice over:
// jose's cooldown after a successful fetch, and a backoff after a failed one,
// so neither a spray of random kids nor an IdP outage turns every request into
// a request to the IdP.
import {
  createRemoteJWKSet,
  customFetch,
  type FetchImplementation,
  type JWTVerifyGetKey,
  type RemoteJWKSet,
} from 'jose';
import { z } from 'zod';
import { discoverJwksUri } from './discovery.ts';
import { type HttpClient, REQUEST_TIMEOUT_MS } from './httpclient.ts';
import { AuthError } from './identity.ts';

/** Keys older than this are re-read before use, so a key the IdP withdrew stops verifying. */
export const JWKS_MAX_AGE_MS = 10 * 60_000;
/** An outage should heal quickly once the IdP is back, whatever the refresh interval. */
export const MAX_RETRY_AFTER_FAILURE_MS = 5_000;

export interface KeySourceOptions {
  issuer: string;
  /** Skips discovery when set. */
  jwksUri?: string | undefined;
  http: HttpClient;
  /** Minimum time between two key set fetches triggered by unknown kids. */
  refreshMinIntervalMs: number;
}

export interface KeySource {
  /** A jose key resolver; throws AuthError('jwks_unavailable') when keys cannot be had. */
  readonly getKey: JWTVerifyGetKey;
}

export function createKeySource(options: KeySourceOptions): KeySource {
  const retryAfterFailureMs = Math.min(options.refreshMinIntervalMs, MAX_RETRY_AFTER_FAILURE_MS);
  const { jwksUri } = options;
  const locate = memoizeSuccess(
    withFailureBackoff(
      async () => (jwksUri === undefined ? discoverJwksUri(options.issuer, options.http) : new URL(jwksUri)),
      retryAfterFailureMs,
    ),
  );
  const fetchJwks: FetchImplementation = withFailureBackoff(
    async (url, init) => Response.json(asJwkSet(url, await options.http.getJson(url, init.signal))),
    retryAfterFailureMs,
  );
  let keys: RemoteJWKSet | undefined;
  return {
    async getKey(header, token) {
      const url = await locate();
      keys ??= createRemoteJWKSet(url, {
        cooldownDuration: options.refreshMinIntervalMs,
        cacheMaxAge: JWKS_MAX_AGE_MS,
        timeoutDuration: REQUEST_TIMEOUT_MS,
        [customFetch]: fetchJwks,
      });
      return keys(header, token);
    },
  };
}

/** Checked here, not by jose, so a malformed answer counts as a failed fetch and is backed off from. */
const jwkSetSchema = z.looseObject({ keys: z.array(z.unknown()) });

function asJwkSet(url: string, document: unknown): unknown {
  if (!jwkSetSchema.safeParse(document).success) {
    throw new AuthError('jwks_unavailable', `${url} did not answer a JWK set`);
  }
  return document;
}

/** Remembers a failure for `backoffMs` and answers it again without calling `fn`. */
function withFailureBackoff<A extends unknown[], R>(
  fn: (...args: A) => Promise<R>,
  backoffMs: number,
): (...args: A) => Promise<R> {
  let failure: { at: number; error: unknown } | undefined;
  return async (...args) => {
    if (failure !== undefined && Date.now() - failure.at < backoffMs) throw failure.error;
    try {
      const result = await fn(...args);
      failure = undefined;
      return result;
    } catch (error) {
      failure = { at: Date.now(), error };
      throw error;
    }
  };
}

/** Shares one call among concurrent callers and keeps its result once it succeeds. */
function memoizeSuccess<R>(fn: () => Promise<R>): () => Promise<R> {
  let pending: Promise<R> | undefined;
  return () => {
    pending ??= fn().catch((error: unknown) => {
      pending = undefined;
      throw error;
    });
    return pending;
  };
}
