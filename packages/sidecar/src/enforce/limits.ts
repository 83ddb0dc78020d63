export type LimitDecision = { ok: true } | { ok: false; retryAfterSeconds: number };

interface Bucket {
  tokens: number;
  updatedMs: number;
}

/**
 * Vectors per minute per identity, as a token bucket that refills
 * continuously: a caller may burst up to the full minute's budget, then is
 * paced. Idle buckets are forgotten so the map stays bounded.
 */
export class VectorRateLimiter {
  readonly #perMinute: number;
  readonly #now: () => number;
  readonly #buckets = new Map<string, Bucket>();
  readonly #maxIdentities: number;

  constructor(perMinute: number, options: { now?: () => number; maxIdentities?: number } = {}) {
    this.#perMinute = perMinute;
    this.#now = options.now ?? Date.now;
    this.#maxIdentities = options.maxIdentities ?? 100_000;
  }

  take(identity: string, vectors: number): LimitDecision {
    const now = this.#now();
    const bucket = this.#refill(identity, now);
    if (vectors <= bucket.tokens) {
      bucket.tokens -= vectors;
      return { ok: true };
    }
    const perMs = this.#perMinute / 60_000;
    const waitMs = vectors > this.#perMinute ? 60_000 : (vectors - bucket.tokens) / perMs;
    return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil(waitMs / 1000)) };
  }

  #refill(identity: string, now: number): Bucket {
    let bucket = this.#buckets.get(identity);
    if (!bucket) {
      if (this.#buckets.size >= this.#maxIdentities) this.#evictFull(now);
      bucket = { tokens: this.#perMinute, updatedMs: now };
      this.#buckets.set(identity, bucket);
      return bucket;
    }
    const elapsed = Math.max(0, now - bucket.updatedMs);
    bucket.tokens = Math.min(this.#perMinute, bucket.tokens + (elapsed * this.#perMinute) / 60_000);
    bucket.updatedMs = now;
    return bucket;
  }

  // A bucket idle for a minute is full again: dropping it changes nothing.
  #evictFull(now: number): void {
    for (const [key, bucket] of this.#buckets) {
      if (now - bucket.updatedMs >= 60_000) this.#buckets.delete(key);
    }
  }
}
