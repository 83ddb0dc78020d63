// Load generators written in Node with undici. The open-loop one sends at a
// constant arrival rate whatever the answers do (so a slow response does not
// hold back the next request, unlike a closed loop); the closed-loop one is the
// fallback for throughput when wrk is missing.
import { setTimeout as sleep } from 'node:timers/promises';
import { Pool } from 'undici';
import { Samples } from './histogram.ts';

export interface Target {
  readonly name: string;
  /** Origin, such as http://127.0.0.1:8080. */
  readonly origin: string;
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body: string;
}

export interface LoadResult {
  /** Per-request latency in ms: dispatch to the last byte of the response. */
  readonly latency: Samples;
  /** How late requests were dispatched against their schedule, in ms (open loop only). */
  readonly lag: Samples;
  readonly ok: number;
  readonly errors: number;
  /** The first error seen, for the report. */
  readonly firstError: string | undefined;
  readonly seconds: number;
  /** Successful responses per second over the run. */
  readonly rate: number;
}

class Tally {
  readonly latency = new Samples();
  readonly lag = new Samples();
  ok = 0;
  errors = 0;
  firstError: string | undefined;

  fail(message: string): void {
    this.errors += 1;
    this.firstError ??= message;
  }
}

async function once(pool: Pool, target: Target, tally: Tally, record: boolean): Promise<void> {
  const started = performance.now();
  try {
    const response = await pool.request({
      method: 'POST',
      path: target.path,
      headers: target.headers,
      body: target.body,
    });
    const body = await response.body.arrayBuffer();
    if (response.statusCode !== 200) {
      tally.fail(`HTTP ${response.statusCode}: ${Buffer.from(body).toString('utf8').slice(0, 200)}`);
      return;
    }
  } catch (error) {
    tally.fail((error as Error).message);
    return;
  }
  if (record) {
    tally.latency.add(performance.now() - started);
    tally.ok += 1;
  }
}

function result(tally: Tally, seconds: number): LoadResult {
  return {
    latency: tally.latency,
    lag: tally.lag,
    ok: tally.ok,
    errors: tally.errors,
    firstError: tally.firstError,
    seconds,
    rate: tally.ok / seconds,
  };
}

function newPool(target: Target, connections: number): Pool {
  return new Pool(target.origin, { connections, pipelining: 1, keepAliveTimeout: 30_000 });
}

/** Sends `count` requests, `concurrency` at a time, unmeasured: warms JIT, connections, caches. */
export async function warmUp(target: Target, count: number, concurrency = 8): Promise<void> {
  const pool = newPool(target, concurrency);
  const tally = new Tally();
  try {
    let left = count;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (left-- > 0) await once(pool, target, tally, false);
      }),
    );
  } finally {
    await pool.close();
  }
  if (tally.errors > 0) throw new Error(`${target.name} fails during warm-up: ${tally.firstError}`);
}

export interface OpenLoopOptions {
  readonly rate: number;
  readonly seconds: number;
  /** Connections in the pool; enough that a request never waits for a free one. */
  readonly connections: number;
}

/** Constant arrival rate: request i is due at start + i / rate, sent then whatever is in flight. */
export async function openLoop(target: Target, options: OpenLoopOptions): Promise<LoadResult> {
  const pool = newPool(target, options.connections);
  const tally = new Tally();
  const total = Math.max(1, Math.round(options.rate * options.seconds));
  const interval = 1000 / options.rate;
  const inFlight = new Set<Promise<void>>();
  const start = performance.now() + 5;
  const hardStop = start + options.seconds * 1000 * 2 + 5_000;
  let sent = 0;
  try {
    while (sent < total && performance.now() < hardStop) {
      const now = performance.now();
      while (sent < total && start + sent * interval <= now) {
        tally.lag.add(now - (start + sent * interval));
        const request = once(pool, target, tally, true);
        inFlight.add(request);
        void request.finally(() => inFlight.delete(request));
        sent += 1;
      }
      if (sent < total) await sleep(Math.max(0, start + sent * interval - performance.now()));
    }
    await Promise.race([Promise.all(inFlight), sleep(30_000)]);
    const seconds = (performance.now() - start) / 1000;
    for (let i = sent; i < total; i++) tally.fail('not sent: the generator ran out of time');
    return result(tally, seconds);
  } finally {
    await pool.destroy();
  }
}

export interface ClosedLoopOptions {
  readonly connections: number;
  readonly seconds: number;
}

/** `connections` callers, each sending its next request as soon as the last one is answered. */
export async function closedLoop(target: Target, options: ClosedLoopOptions): Promise<LoadResult> {
  const pool = newPool(target, options.connections);
  const tally = new Tally();
  const start = performance.now();
  const end = start + options.seconds * 1000;
  try {
    await Promise.all(
      Array.from({ length: options.connections }, async () => {
        while (performance.now() < end && tally.errors < 1_000) await once(pool, target, tally, true);
      }),
    );
    return result(tally, (performance.now() - start) / 1000);
  } finally {
    await pool.destroy();
  }
}
