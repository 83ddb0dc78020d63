// Latency side by side at a fixed arrival rate (scenarios A and C). The run is
// cut into rounds and the targets take turns within each round, so a burst of
// noise from the shared machine falls on every target alike rather than on
// whichever happened to run at that moment.
import { Samples } from './histogram.ts';
import { type LoadResult, openLoop, type Target, warmUp } from './load.ts';

export interface LatencyPlan {
  readonly rate: number;
  readonly seconds: number;
  readonly rounds: number;
  readonly connections: number;
  readonly warmUpRequests: number;
  /** Called once every target is warmed up, before the first measured request. */
  readonly onWarm?: () => Promise<void>;
}

export async function latencySideBySide(
  targets: readonly Target[],
  plan: LatencyPlan,
): Promise<Map<Target, LoadResult>> {
  for (const target of targets) await warmUp(target, plan.warmUpRequests);
  await plan.onWarm?.();
  const parts = new Map<Target, LoadResult[]>(targets.map((target) => [target, []]));
  for (let round = 0; round < plan.rounds; round++) {
    // Alternate the order too, so no target always runs right after another.
    const order = round % 2 === 0 ? targets : [...targets].reverse();
    for (const target of order) {
      const result = await openLoop(target, {
        rate: plan.rate,
        seconds: plan.seconds / plan.rounds,
        connections: plan.connections,
      });
      parts.get(target)?.push(result);
    }
  }
  return new Map(targets.map((target) => [target, merge(parts.get(target) ?? [])]));
}

function merge(results: readonly LoadResult[]): LoadResult {
  const latency = new Samples();
  const lag = new Samples();
  let ok = 0;
  let errors = 0;
  let seconds = 0;
  let firstError: string | undefined;
  for (const result of results) {
    latency.addAll(result.latency);
    lag.addAll(result.lag);
    ok += result.ok;
    errors += result.errors;
    seconds += result.seconds;
    firstError ??= result.firstError;
  }
  return { latency, lag, ok, errors, firstError, seconds, rate: seconds > 0 ? ok / seconds : 0 };
}
