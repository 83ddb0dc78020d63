// Exponential backoff with jitter: retries of many pods, or of many replicas,
// spread out instead of arriving together.
export type BackoffOptions = { initialMs: number; maxMs: number };

/** The delay before retry number `attempt` (0 is the first retry). */
export function backoffDelay(attempt: number, options: BackoffOptions): number {
  const ceiling = Math.min(options.maxMs, options.initialMs * 2 ** Math.min(attempt, 30));
  // Between half and all of the ceiling.
  return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
}
