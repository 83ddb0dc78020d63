// Child processes of the bench: the Node children (sidecar, demo model) announce
// readiness with one JSON line on stdout and exit when their stdin closes, so a
// killed bench never leaves them behind. Optional CPU pinning uses taskset,
// which execs the command, so the pid is the pinned program's own.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, constants, createWriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { onTeardown, trackChild } from './teardown.ts';

/** The prefix a Node child writes before its ready message. */
export const READY = 'bench-ready ';

export interface Child<Ready> {
  readonly name: string;
  readonly pid: number;
  readonly ready: Ready;
  readonly process: ChildProcess;
  stop(): Promise<void>;
}

/** The absolute path of an executable on PATH or in the usual sbin dirs, or undefined. */
export function findProgram(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/local/sbin', '/sbin'];
  for (const dir of dirs) {
    if (!dir.startsWith('/')) continue;
    const path = join(dir, name);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {}
  }
  return undefined;
}

const taskset = findProgram('taskset');

/** The command line that runs argv on the given CPU, or argv itself when pinning is impossible. */
export function pinned(cpus: string | undefined, argv: readonly string[]): string[] {
  return cpus === undefined || taskset === undefined ? [...argv] : [taskset, '-c', cpus, ...argv];
}

export const canPin = taskset !== undefined;

export interface NodeChildOptions {
  readonly name: string;
  /** A TypeScript entry point next to this file. */
  readonly script: string;
  readonly env?: Record<string, string>;
  /** Node flags before the script, such as --cpu-prof. */
  readonly nodeArgs?: readonly string[];
  /** A CPU list for taskset, such as `1` or `0-2`. */
  readonly cpus?: string;
  readonly logFile: string;
  readonly timeoutMs?: number;
}

/** Starts a Node child running a script of the bench and waits for its ready line. */
export async function startNodeChild<Ready>(options: NodeChildOptions): Promise<Child<Ready>> {
  const script = fileURLToPath(new URL(options.script, import.meta.url));
  const [command, ...args] = pinned(options.cpus, [process.execPath, ...(options.nodeArgs ?? []), script]);
  const child = spawn(command as string, args, {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, ...options.env },
  });
  trackChild(child);
  const log = createWriteStream(options.logFile, { flags: 'a' });
  child.stderr?.pipe(log);
  const exited = once(child, 'exit');
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    log.end();
  };
  onTeardown(`stop ${options.name}`, stop);
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const ready = await new Promise<Ready>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${options.name} was not ready within ${options.timeoutMs ?? 30_000} ms`)),
      options.timeoutMs ?? 30_000,
    );
    lines.on('line', (line) => {
      if (line.startsWith(READY)) {
        clearTimeout(timer);
        resolve(JSON.parse(line.slice(READY.length)) as Ready);
      } else log.write(`${line}\n`);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${options.name} exited (${signal ?? code}) before it was ready`));
    });
    child.once('error', reject);
  }).catch(async (error: Error) => {
    await stop();
    const tail = (await readFile(options.logFile, 'utf8').catch(() => '')).split('\n').slice(-20).join('\n');
    throw new Error(`${error.message}\n--- ${options.name} log (last lines) ---\n${tail}`);
  });
  return { name: options.name, pid: child.pid as number, ready, process: child, stop };
}

/** Inside a child: announce readiness, and shut down on SIGTERM, SIGINT or when the bench goes away. */
export function serveAsChild(ready: unknown, close: () => Promise<void>): void {
  let closing = false;
  const shutdown = () => {
    if (closing) return;
    closing = true;
    const timer = setTimeout(() => process.exit(1), 8_000);
    close().then(
      () => {
        clearTimeout(timer);
        process.exit(0);
      },
      (error: unknown) => {
        console.error(error);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  process.stdin.on('end', shutdown);
  process.stdin.on('error', shutdown);
  process.stdin.resume();
  process.stdout.write(`${READY}${JSON.stringify(ready)}\n`);
}

/** Peak resident set size of a live process in bytes (VmHWM), or undefined where /proc is missing. */
export async function peakRss(pid: number): Promise<number | undefined> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => undefined);
  const match = status?.match(/^VmHWM:\s+(\d+)\s+kB/m);
  return match ? Number(match[1]) * 1024 : undefined;
}

/** CPU seconds (user + system) a live process has used so far, or undefined where /proc is missing. */
export async function cpuSeconds(pid: number): Promise<number | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (stat === undefined) return undefined;
  // Fields after the command name, which is in parentheses and may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return ticks / clockTicks;
}

const clockTicks = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
