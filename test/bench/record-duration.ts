// What durable recording adds to each request, as the sidecar measures it
// itself (`veil_record_duration` on its admin port): the time from the moment
// a request is put on record until its record is safe and the answer may go.
// Unlike the difference of two end-to-end runs, it is not drowned by the noise
// of the generator, the model and the machine, which on a small shared
// machine is tens of milliseconds at p99.

/** Cumulative counts by upper bound (ms), as Prometheus text gives them. */
export type Buckets = ReadonlyMap<number, number>;

const METRIC = 'veil_record_duration';

export async function readRecordDuration(adminUrl: string): Promise<Buckets> {
  const response = await fetch(`${adminUrl}/metrics`, { signal: AbortSignal.timeout(10_000) });
  const text = await response.text();
  const buckets = new Map<number, number>();
  for (const match of text.matchAll(new RegExp(`^${METRIC}_bucket\\{[^}]*le="([^"]+)"\\} (\\d+)$`, 'gm'))) {
    const bound = match[1] === '+Inf' ? Number.POSITIVE_INFINITY : Number(match[1]);
    buckets.set(bound, Number(match[2]));
  }
  if (buckets.size === 0) throw new Error(`the sidecar's metrics have no ${METRIC} histogram`);
  return buckets;
}

/**
 * The q-quantile of the requests recorded between two readings, interpolated
 * within its bucket as Prometheus' histogram_quantile does; with the bucket's
 * upper bound, which it certainly does not exceed.
 */
export function quantileBetween(
  before: Buckets,
  after: Buckets,
  q: number,
): { estimate: number; atMost: number; count: number } | undefined {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const counts = bounds.map((bound) => (after.get(bound) ?? 0) - (before.get(bound) ?? 0));
  const total = counts.at(-1) ?? 0;
  if (total === 0) return undefined;
  const rank = q * total;
  for (let i = 0; i < bounds.length; i++) {
    const count = counts[i] ?? 0;
    if (count < rank) continue;
    const upper = bounds[i] ?? Number.POSITIVE_INFINITY;
    const lower = i === 0 ? 0 : (bounds[i - 1] ?? 0);
    const below = i === 0 ? 0 : (counts[i - 1] ?? 0);
    if (!Number.isFinite(upper)) return { estimate: lower, atMost: upper, count: total };
    const estimate = lower + ((upper - lower) * (rank - below)) / Math.max(1, count - below);
    return { estimate, atMost: upper, count: total };
  }
  return undefined;
}
