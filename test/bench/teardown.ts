// Everything the bench starts is registered here and torn down in reverse
// order: after a normal run, on a failure, on Ctrl-C (SIGINT), SIGTERM, or when
// the run exceeds its time limit. A last synchronous pass on process exit kills
// what is left and removes temporary directories even if an async step hung.
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';

type Step = { name: string; run: () => Promise<unknown> };

const steps: Step[] = [];
const children = new Set<ChildProcess>();
const tempDirs = new Set<string>();
let tearing: Promise<void> | undefined;
let interrupted = false;

/** True once a signal or the watchdog began stopping the run: errors after that are its echo. */
export function stopping(): boolean {
  return interrupted;
}

/** Adds an async teardown step; steps run last-registered first. */
export function onTeardown(name: string, run: () => Promise<unknown>): void {
  steps.push({ name, run });
}

/** A child process to SIGKILL on exit if it is still running then. */
export function trackChild(child: ChildProcess): void {
  children.add(child);
  child.once('exit', () => children.delete(child));
}

/** A temporary directory to remove on teardown and, failing that, on exit. */
export function trackTempDir(dir: string): void {
  tempDirs.add(dir);
}

export function teardown(): Promise<void> {
  tearing ??= (async () => {
    while (steps.length > 0) {
      const step = steps.pop() as Step;
      const timeout = new Promise<'timeout'>((resolve) => setTimeout(resolve, 10_000, 'timeout').unref());
      const outcome = await Promise.race([
        step.run().then(
          () => 'ok',
          (error: unknown) => error,
        ),
        timeout,
      ]);
      if (outcome !== 'ok') console.error(`teardown: ${step.name}: ${String(outcome)}`);
    }
    finalSweep();
  })();
  return tearing;
}

function finalSweep(): void {
  for (const child of children) child.kill('SIGKILL');
  children.clear();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}

/** Installs the signal, exit and watchdog handlers; the watchdog fires after limitMs. */
export function installTeardownHandlers(limitMs: number): void {
  process.on('exit', finalSweep);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      interrupted = true;
      console.error(`\n${signal}: stopping and cleaning up…`);
      void teardown().finally(() => process.exit(130));
    });
  }
  const watchdog = setTimeout(() => {
    interrupted = true;
    console.error(`the bench ran longer than ${Math.round(limitMs / 1000)} s: stopping`);
    void teardown().finally(() => process.exit(1));
  }, limitMs);
  watchdog.unref();
}
