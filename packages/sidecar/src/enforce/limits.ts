export type LimitDecision = { ok: true } | { ok: false; retryAfterSeconds: number };

interface Bucket {
  tokens: number;
  updatedMs: number;
}

export interface VectorRateLimiterOptions {
  now?: () => number;
  maxIdentities?: number;
}

/** Idle this long, a bucket has refilled to the full budget. */
const REFILL_MS = 60_000;

/**
 * Vectors per minute per identity, as a token bucket that refills
 * continuously: a caller may burst up to the full minute's budget, then is
 * paced. The table of identities is bounded: idle buckets are forgotten, and
 * past `maxIdentities` the least recently used caller is too.
 */
export class VectorRateLimiter {
  #perMinute: number;
  readonly #now: () => number;
  /** In order of last use, least recent first: what `#makeRoom` relies on. */
  readonly #buckets = new Map<string, Bucket>();
  readonly #maxIdentities: number;

  constructor(perMinute: number, options: VectorRateLimiterOptions = {}) {
    this.#perMinute = perMinute;
    this.#now = options.now ?? Date.now;
    this.#maxIdentities = options.maxIdentities ?? 100_000;
  }

  /**
   * Changes the rate for every caller, each keeping what it has spent (capped
   * at the new budget): a new rate must not hand anyone a fresh budget, least
   * of all the caller it was lowered to throttle. One table for all rates, so
   * requests begun under the old rate still charge, and give back to, the
   * buckets in force.
   */
  setRate(perMinute: number): void {
    if (perMinute === this.#perMinute) return;
    const now = this.#now();
    // Time already passed refills at the rate it passed under.
    for (const bucket of this.#buckets.values()) this.#bringUpTo(bucket, now);
    this.#perMinute = perMinute;
    for (const bucket of this.#buckets.values()) bucket.tokens = Math.min(perMinute, bucket.tokens);
  }

  take(identity: string, vectors: number): LimitDecision {
    const now = this.#now();
    const bucket = this.#refill(identity, now);
    if (vectors <= bucket.tokens) {
      bucket.tokens -= vectors;
      return { ok: true };
    }
    const perMs = this.#perMinute / REFILL_MS;
    const waitMs = vectors > this.#perMinute ? REFILL_MS : (vectors - bucket.tokens) / perMs;
    return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil(waitMs / 1000)) };
  }

  /**
   * Returns vectors taken for a request that then produced none (refused
   * later on its way, or answered 202 to come back once approved): it was
   * charged on its way in, before it was known whether the model would run.
   */
  giveBack(identity: string, vectors: number): void {
    const bucket = this.#buckets.get(identity);
    if (bucket) bucket.tokens = Math.min(this.#perMinute, bucket.tokens + vectors);
  }

  #refill(identity: string, now: number): Bucket {
    const bucket = this.#buckets.get(identity);
    if (!bucket) {
      this.#makeRoom(now);
      const fresh = { tokens: this.#perMinute, updatedMs: now };
      this.#buckets.set(identity, fresh);
      return fresh;
    }
    this.#buckets.delete(identity);
    this.#buckets.set(identity, bucket);
    this.#bringUpTo(bucket, now);
    return bucket;
  }

  #bringUpTo(bucket: Bucket, now: number): void {
    const elapsed = Math.max(0, now - bucket.updatedMs);
    bucket.tokens = Math.min(this.#perMinute, bucket.tokens + (elapsed * this.#perMinute) / REFILL_MS);
    bucket.updatedMs = now;
  }

  // Idle buckets lead the map and are full again: dropping them changes
  // nothing. Past them, at the cap, the least recently used caller is dropped
  // and starts afresh: the table, and the work per new identity, stay bounded.
  #makeRoom(now: number): void {
    for (const [identity, bucket] of this.#buckets) {
      const idle = now - bucket.updatedMs >= REFILL_MS;
      if (!idle && this.#buckets.size < this.#maxIdentities) return;
      this.#buckets.delete(identity);
    }
  }
}
