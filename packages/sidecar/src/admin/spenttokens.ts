/** What `spend` made of a token: first use, a replay, or no room to record it. */
export type Spend = 'spent' | 'replayed' | 'full';

/** Far more pushes than a controller sends one pod while a token lives (one per policy version). */
const defaultCapacity = 1024;

/**
 * The `jti`s of the push tokens this sidecar has accepted. Pushes come over TLS,
 * but a token that leaks elsewhere (a proxy log, a dump of the controller)
 * could be sent again while it is still valid; each is remembered until it is
 * not, and refused meanwhile. The record is in memory only: for the ~90 s a
 * token verifies, a restarted container would take it once more. Refusing
 * tokens issued before the start would close that, but would also refuse the
 * controller's pushes in the first seconds after it: the controller backdates
 * `iat`, and its clock and this node's may differ by up to the tolerance.
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
