// Closed-loop maximum throughput (scenario B): wrk when installed, else the
// Node generator. While each target runs, the CPU time of the processes behind
// it is sampled from /proc, so the report can say which side was the limit.
import { closedLoop, type Target, warmUp } from './load.ts';
import { cpuSeconds } from './processes.ts';
import { runWrk, writeWrkScript } from './wrk.ts';

export interface ThroughputPlan {
  readonly connections: number;
  readonly seconds: number;
  readonly warmUpRequests: number;
  /** wrk's path, or undefined for the Node generator. */
  readonly wrk: string | undefined;
  /** Where the load generator runs (a taskset CPU list). */
  readonly cpus: string | undefined;
  readonly dir: string;
}

export interface ThroughputResult {
  readonly rate: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly errors: number;
  readonly firstError: string | undefined;
  /** CPU used by each watched process, as a share of one core over the run. */
  readonly cpu: Map<string, number | undefined>;
}

export async function throughput(
  target: Target,
  watched: ReadonlyMap<string, number>,
  plan: ThroughputPlan,
): Promise<ThroughputResult> {
  await warmUp(target, plan.warmUpRequests, Math.min(plan.connections, 16));
  const before = await cpuOf(watched);
  const started = performance.now();
  let result: Omit<ThroughputResult, 'cpu'>;
  if (plan.wrk) {
    const script = await writeWrkScript(plan.dir, target);
    const wrk = await runWrk(plan.wrk, script, target, {
      connections: plan.connections,
      seconds: plan.seconds,
      threads: 1,
      cpus: plan.cpus,
    });
    result = {
      ...wrk,
      firstError: wrk.errors > 0 ? `${wrk.errors} non-2xx answers or socket errors` : undefined,
    };
  } else {
    const node = await closedLoop(target, { connections: plan.connections, seconds: plan.seconds });
    result = {
      rate: node.rate,
      p50Ms: node.latency.quantile(0.5),
      p99Ms: node.latency.quantile(0.99),
      errors: node.errors,
      firstError: node.firstError,
    };
  }
  const wall = (performance.now() - started) / 1000;
  const after = await cpuOf(watched);
  const cpu = new Map<string, number | undefined>();
  for (const [name, used] of after) {
    const start = before.get(name);
    cpu.set(name, used === undefined || start === undefined ? undefined : (used - start) / wall);
  }
  return { ...result, cpu };
}

async function cpuOf(watched: ReadonlyMap<string, number>): Promise<Map<string, number | undefined>> {
  const used = new Map<string, number | undefined>();
  for (const [name, pid] of watched) used.set(name, await cpuSeconds(pid));
  return used;
}
