// What a bench child (the webhook of W, the recording sidecar of C) spent
// between two readings: CPU time and the garbage collector's pauses, so the
// report can give a service time beside a latency, and say how much of the
// tail GC can explain.
import { PerformanceObserver } from 'node:perf_hooks';

export interface ProcessUsage {
  /** User and system CPU time, in ms. */
  readonly cpuMs: number;
  readonly gcCount: number;
  /** Total GC pause time, in ms. */
  readonly gcMs: number;
  /** The longest single pause, in ms. */
  readonly gcMaxMs: number;
}

export interface UsageTracker {
  /** The usage since the last reading (or the start). */
  read(): ProcessUsage;
  stop(): void;
}

export function trackUsage(): UsageTracker {
  let cpu = process.cpuUsage();
  let gc = { count: 0, ms: 0, maxMs: 0 };
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      gc.count += 1;
      gc.ms += entry.duration;
      gc.maxMs = Math.max(gc.maxMs, entry.duration);
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  const read = () => {
    const spent = process.cpuUsage(cpu);
    cpu = process.cpuUsage();
    const usage = {
      cpuMs: (spent.user + spent.system) / 1000,
      gcCount: gc.count,
      gcMs: gc.ms,
      gcMaxMs: gc.maxMs,
    };
    gc = { count: 0, ms: 0, maxMs: 0 };
    return usage;
  };
  return { read, stop: () => observer.disconnect() };
}
