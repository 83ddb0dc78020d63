// Identities of tokens already verified, keyed by the token's SHA-256, so a
// caller repeating the same bearer token skips signature verification. Entries
// live until the token expires or `maxTtlMs` passes, whichever is first; the
// least recently used entry goes when the cache is full.
import type { Identity } from './identity.ts';

export interface TokenCacheOptions {
  maxEntries: number;
  maxTtlMs: number;
}

export interface TokenCache {
  get(digest: string, nowMs: number): Identity | undefined;
  /** `expiresAtMs` is when the token itself expires. */
  set(digest: string, identity: Identity, expiresAtMs: number, nowMs: number): void;
  readonly size: number;
  clear(): void;
}

export function createTokenCache(options: TokenCacheOptions): TokenCache {
  const entries = new Map<string, { identity: Identity; until: number }>();
  return {
    get(digest, nowMs) {
      const entry = entries.get(digest);
      if (entry === undefined) return undefined;
      entries.delete(digest);
      if (nowMs >= entry.until) return undefined;
      entries.set(digest, entry);
      return entry.identity;
    },
    set(digest, identity, expiresAtMs, nowMs) {
      const until = Math.min(expiresAtMs, nowMs + options.maxTtlMs);
      if (until <= nowMs || options.maxEntries < 1) return;
      entries.delete(digest);
      entries.set(digest, { identity, until });
      for (const oldest of entries.keys()) {
        if (entries.size <= options.maxEntries) break;
        entries.delete(oldest);
      }
    },
    get size() {
      return entries.size;
    },
    clear() {
      entries.clear();
    },
  };
}
