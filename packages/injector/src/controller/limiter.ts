// At most N tasks at once: a policy edit over a thousand pods must not open a
// thousand connections at the same moment.
export class Limiter {
  readonly #max: number;
  #running = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(max: number) {
    this.#max = Math.max(1, max);
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.#running >= this.#max) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    else this.#running++;
    try {
      return await task();
    } finally {
      // The slot passes straight to the next waiter, so the count stays exact.
      const next = this.#waiting.shift();
      if (next) next();
      else this.#running--;
    }
  }
}
