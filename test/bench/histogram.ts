// Latency samples in milliseconds. A run holds at most a few hundred thousand
// of them, so keeping every sample and sorting once is exact and cheap enough.
export class Samples {
  #values = new Float64Array(4096);
  #count = 0;
  #sorted = true;

  get count(): number {
    return this.#count;
  }

  add(ms: number): void {
    if (this.#count === this.#values.length) {
      const grown = new Float64Array(this.#values.length * 2);
      grown.set(this.#values);
      this.#values = grown;
    }
    this.#values[this.#count++] = ms;
    this.#sorted = false;
  }

  /** Adds every sample of other. */
  addAll(other: Samples): void {
    for (let i = 0; i < other.#count; i++) this.add(other.#values[i] as number);
  }

  /** The q-quantile (0 < q ≤ 1), nearest rank; NaN when empty. */
  quantile(q: number): number {
    if (this.#count === 0) return Number.NaN;
    const view = this.#values.subarray(0, this.#count);
    if (!this.#sorted) {
      view.sort();
      this.#sorted = true;
    }
    const rank = Math.min(this.#count, Math.max(1, Math.ceil(q * this.#count)));
    return view[rank - 1] ?? Number.NaN;
  }
}
