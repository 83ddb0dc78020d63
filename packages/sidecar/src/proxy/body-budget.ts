// How many bytes of request bodies the proxy holds at once, across all callers
// and connections. Each connection of an authenticated caller may send up to
// the policy's maxBytesPerRequest, and connections are not capped: without a
// shared bound, enough parallel uploads would run the sidecar out of memory,
// and every request in flight with it. A request holds its bytes from the
// first chunk read until it is answered (a request held for approval keeps
// its body that long, within heldBodyShare), then gives them back.

/**
 * A request body costs the proxy several times its size while it is parsed,
 * masked and forwarded: 16 MiB of bodies stays well inside the chart's 256Mi
 * memory limit, and is sixteen requests of the policy's default 1 MiB at most.
 */
export const defaultBodyMemoryBytes = 16 * 1024 * 1024;

/**
 * The most of a budget that requests held for approval may keep together:
 * half, so that callers never held always have the other half, however many
 * callers are held and however long.
 */
export function heldBodyShare(capacityBytes: number): number {
  return Math.floor(capacityBytes / 2);
}

/** The request bodies held now would pass the budget with this one. */
export class BodyBudgetError extends Error {
  constructor(capacityBytes: number) {
    super(
      `the proxy holds as many request bodies as it may (${capacityBytes} bytes in all); try again shortly`,
    );
  }
}

export class BodyBudget {
  readonly capacityBytes: number;
  #usedBytes = 0;

  constructor(capacityBytes: number) {
    this.capacityBytes = capacityBytes;
  }

  /** Bytes held now by requests not yet answered. */
  get usedBytes(): number {
    return this.#usedBytes;
  }

  /** A request's share, empty until it reads; give it back with `release` once the request is answered. */
  lease(): BodyLease {
    return new BodyLease(this);
  }

  /**
   * Takes `bytes` for a lease holding `held` already. A request alone may pass
   * the capacity, so that a policy allowing bodies larger than it is never
   * refused for good: it waits only for the others to finish.
   */
  take(bytes: number, held: number): boolean {
    const others = this.#usedBytes - held;
    if (others > 0 && this.#usedBytes + bytes > this.capacityBytes) return false;
    this.#usedBytes += bytes;
    return true;
  }

  give(bytes: number): void {
    this.#usedBytes -= bytes;
  }
}

export class BodyLease {
  readonly #budget: BodyBudget;
  #held = 0;

  constructor(budget: BodyBudget) {
    this.#budget = budget;
  }

  /** False, and nothing taken, when the budget has no room for `bytes` more. */
  take(bytes: number): boolean {
    if (!this.#budget.take(bytes, this.#held)) return false;
    this.#held += bytes;
    return true;
  }

  /** The bytes this request's body holds of the budget now: all it was sent, once read. */
  get bytes(): number {
    return this.#held;
  }

  /** Why `take` said no. */
  refusal(): BodyBudgetError {
    return new BodyBudgetError(this.#budget.capacityBytes);
  }

  release(): void {
    this.#budget.give(this.#held);
    this.#held = 0;
  }
}
