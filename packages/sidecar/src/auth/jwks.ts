// One issuer's signing keys: the JWKS URI (configured, or found by discovery)
// and a jose remote key set that is cached and refreshed when a token names a
// kid it does not hold. Refreshes are rate limited twice over: jose's cooldown
// after a successful fetch, and a backoff after a failed one, so neither a
// spray of random kids nor an IdP outage turns every request into a request
// to the IdP. A discovered URI is looked up again, at most once per refresh
// interval, when the key set fails or lacks a kid: the IdP may have moved it.
import {
  createRemoteJWKSet,
  customFetch,
  errors,
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
  /** Minimum time between two key set fetches triggered by unknown kids, and between two discoveries. */
  refreshMinIntervalMs: number;
}

export interface KeySource {
  /** A jose key resolver; throws AuthError('jwks_unavailable') when keys cannot be had. */
  readonly getKey: JWTVerifyGetKey;
}

interface KeySet {
  readonly url: string;
  readonly getKey: RemoteJWKSet;
}

export function createKeySource(options: KeySourceOptions): KeySource {
  const retryAfterFailureMs = Math.min(options.refreshMinIntervalMs, MAX_RETRY_AFTER_FAILURE_MS);
  // Each key set backs off on its own: a failure at a URL the IdP left must
  // not hold back the first fetch at the one it moved to.
  const keySetAt = (url: URL): KeySet => {
    const fetchJwks: FetchImplementation = withFailureBackoff(
      async (href, init) => Response.json(asJwkSet(href, await options.http.getJson(href, init.signal))),
      retryAfterFailureMs,
    );
    const getKey = createRemoteJWKSet(url, {
      cooldownDuration: options.refreshMinIntervalMs,
      cacheMaxAge: JWKS_MAX_AGE_MS,
      timeoutDuration: REQUEST_TIMEOUT_MS,
      [customFetch]: fetchJwks,
    });
    return { url: url.href, getKey };
  };
  if (options.jwksUri !== undefined) return keySetAt(new URL(options.jwksUri));
  return discoveredKeySource(options, keySetAt, retryAfterFailureMs);
}

function discoveredKeySource(
  options: KeySourceOptions,
  keySetAt: (url: URL) => KeySet,
  retryAfterFailureMs: number,
): KeySource {
  const discover = withFailureBackoff(
    () => discoverJwksUri(options.issuer, options.http),
    retryAfterFailureMs,
  );
  let current: KeySet | undefined;
  let discoveredAt = Number.NEGATIVE_INFINITY;
  let pending: Promise<KeySet> | undefined;
  // Concurrent callers share one discovery.
  const locate = (): Promise<KeySet> => {
    pending ??= (async () => {
      discoveredAt = Date.now();
      const url = await discover();
      if (current?.url !== url.href) current = keySetAt(url);
      return current;
    })().finally(() => {
      pending = undefined;
    });
    return pending;
  };
  // Joins a discovery under way, so callers failing alongside the one that
  // started it see its answer too; starts one only when the interval allows.
  const relocate = async (failed: KeySet): Promise<KeySet> => {
    if (pending === undefined && Date.now() - discoveredAt < options.refreshMinIntervalMs) {
      return current ?? failed;
    }
    // Discovery failing too says no more than the key set's own error.
    return locate().catch(() => failed);
  };
  return {
    async getKey(header, token) {
      const keySet = current ?? (await locate());
      try {
        return await keySet.getKey(header, token);
      } catch (error) {
        if (!mayHaveMoved(error)) throw error;
        const moved = await relocate(keySet);
        if (moved === keySet) throw error;
        return moved.getKey(header, token);
      }
    },
  };
}

/** The key set could not be read, or has no key for the token: both are what a moved jwks_uri looks like. */
function mayHaveMoved(error: unknown): boolean {
  if (error instanceof AuthError) return error.reason === 'jwks_unavailable';
  return (
    error instanceof errors.JWKSNoMatchingKey ||
    error instanceof errors.JWKSTimeout ||
    error instanceof errors.JWKSInvalid
  );
}

/**
 * Checked here as strictly as jose checks a key set (an object whose `keys` are
 * all objects), so a malformed answer counts as a failed fetch and is backed off
 * from: one jose refuses after a successful fetch starts no cooldown, and every
 * token naming the issuer would fetch the key set again.
 */
const jwkSetSchema = z.looseObject({ keys: z.array(z.looseObject({})) });

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
