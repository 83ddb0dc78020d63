export type BackoffOptions = { baseMs: number; capMs: number };

export const defaultBackoff: BackoffOptions = { baseMs: 250, capMs: 5_000 };

/**
 * Exponential backoff with "equal jitter": half the step is fixed, half random,
 * so many sidecars that lost the same bucket do not retry in lockstep, and no
 * retry comes sooner than half its step.
 */
export function backoffDelay(failures: number, options: BackoffOptions, random = Math.random): number {
  const step = Math.min(options.capMs, options.baseMs * 2 ** Math.max(0, failures - 1));
  return step / 2 + (random() * step) / 2;
}
