/**
 * The requests that may call the model and are not yet on record. A stopping
 * sidecar waits for them whether or not their callers are still connected: a
 * request whose caller hung up no longer holds the data port's close open, yet
 * still has its record to write before the audit stream closes.
 */
export class InFlight {
  #count = 0;
  #idle: Promise<void> | undefined;
  #resolveIdle: (() => void) | undefined;

  enter(): void {
    this.#count += 1;
  }

  leave(): void {
    this.#count -= 1;
    if (this.#count > 0) return;
    this.#resolveIdle?.();
    this.#idle = undefined;
    this.#resolveIdle = undefined;
  }

  /** Resolves once no request is in flight. */
  idle(): Promise<void> {
    if (this.#count === 0) return Promise.resolve();
    this.#idle ??= new Promise((resolve) => {
      this.#resolveIdle = resolve;
    });
    return this.#idle;
  }
}
