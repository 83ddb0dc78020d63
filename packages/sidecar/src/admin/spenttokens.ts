/** What `spend` made of a token: first use, a replay, or no room to record it. */
export type Spend = 'spent' | 'replayed' | 'full';

/** Far more pushes than a controller sends one pod while a token lives (one per policy version). */
const defaultCapacity = 1024;

/**
 * The `jti`s of the push tokens this sidecar has accepted. Pushes cross the pod
 * network in the clear, so a token seen there could be sent again while it is
 * still valid; each is remembered until it is not, and refused meanwhile.
 */
export class SpentTokens {
  /** jti → the last second (epoch) at which the token still verifies. */
  readonly #until = new Map<string, number>();
  readonly #capacity: number;
  readonly #now: () => number;

  constructor(capacity = defaultCapacity, now = () => Math.floor(Date.now() / 1000)) {
    this.#capacity = capacity;
    this.#now = now;
  }

  /**
   * Records `jti` as used until `until`. When the record is full of tokens that
   * still verify, it refuses rather than forgets one: forgetting would reopen
   * that token to a replay.
   */
  spend(jti: string, until: number): Spend {
    if (this.#until.has(jti)) return 'replayed';
    if (this.#until.size >= this.#capacity) this.#forgetExpired();
    if (this.#until.size >= this.#capacity) return 'full';
    this.#until.set(jti, until);
    return 'spent';
  }

  #forgetExpired(): void {
    const now = this.#now();
    for (const [jti, until] of this.#until) if (until < now) this.#until.delete(jti);
  }
}
