// Child processes of the bench: the Node children (sidecar, demo model, bare
// proxy, canned upstream without nginx) announce readiness with one JSON line
// on stdout and exit when their stdin closes, so a killed bench never leaves
// them behind. Optional CPU pinning uses taskset, which execs the command, so
// the pid is the pinned program's own.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, constants, createWriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { onTeardown, trackChild } from './teardown.ts';

/** The prefixes a Node child writes before its ready message and its replies to commands. */
export const READY = 'bench-ready ';
export const REPLY = 'bench-reply ';

/** A command to a Node child: one JSON line on its stdin. */
export type Command = { readonly command: string; readonly [key: string]: unknown };
type Reply = { id: number; result?: unknown; error?: string };

export interface Child<Ready> {
  readonly name: string;
  readonly pid: number;
  readonly ready: Ready;
  readonly process: ChildProcess;
  /** Sends a command the child serves (see `serveAsChild`) and waits for its answer. */
  call<Result>(command: Command, timeoutMs?: number): Promise<Result>;
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
  /** An entry point next to this file, or in `dir`. */
  readonly script: string;
  /** Where the script is, when not beside this file (such as the bench's emitted JavaScript). */
  readonly dir?: string;
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
  const script =
    options.dir === undefined
      ? fileURLToPath(new URL(options.script, import.meta.url))
      : join(options.dir, options.script);
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
  const waiting = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  let calls = 0;
  child.once('exit', () => {
    for (const pending of waiting.values()) pending.reject(new Error(`${options.name} exited`));
    waiting.clear();
  });
  const ready = await new Promise<Ready>((resolve, reject) => {
    const timeoutMs = options.timeoutMs ?? 60_000;
    const timer = setTimeout(
      () => reject(new Error(`${options.name} was not ready within ${timeoutMs} ms`)),
      timeoutMs,
    );
    lines.on('line', (line) => {
      if (line.startsWith(READY)) {
        clearTimeout(timer);
        resolve(JSON.parse(line.slice(READY.length)) as Ready);
      } else if (line.startsWith(REPLY)) {
        const reply = JSON.parse(line.slice(REPLY.length)) as Reply;
        const pending = waiting.get(reply.id);
        waiting.delete(reply.id);
        if (reply.error !== undefined) pending?.reject(new Error(`${options.name}: ${reply.error}`));
        else pending?.resolve(reply.result);
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
  const call = <Result>(command: Command, timeoutMs = 120_000): Promise<Result> => {
    const id = ++calls;
    return new Promise<Result>((resolve, reject) => {
      const timer = setTimeout(() => {
        waiting.delete(id);
        reject(new Error(`${options.name} did not answer ${command.command} within ${timeoutMs} ms`));
      }, timeoutMs);
      waiting.set(id, {
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value as Result);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      child.stdin?.write(`${JSON.stringify({ ...command, id })}\n`);
    });
  };
  return { name: options.name, pid: child.pid as number, ready, process: child, call, stop };
}

export type CommandHandler = (command: Command) => Promise<unknown>;

/**
 * Inside a child: serve commands (JSON lines on stdin), announce readiness, and
 * shut down on SIGTERM, SIGINT or when stdin closes (the bench went away).
 * Every child answers `memory` with its `process.memoryUsage()`, so the report
 * can say where a process's resident memory goes.
 */
export function serveAsChild(ready: unknown, close: () => Promise<void>, handle?: CommandHandler): void {
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
  const commands = createInterface({ input: process.stdin });
  commands.on('line', (line) => {
    const { id, ...command } = JSON.parse(line) as Command & { id: number };
    const answer =
      command.command === 'memory'
        ? Promise.resolve(process.memoryUsage())
        : handle
          ? handle(command as Command)
          : Promise.reject(new Error('no commands served'));
    answer.then(
      (result) => process.stdout.write(`${REPLY}${JSON.stringify({ id, result })}\n`),
      (error: unknown) =>
        process.stdout.write(
          `${REPLY}${JSON.stringify({ id, error: String((error as Error).message ?? error) })}\n`,
        ),
    );
  });
  commands.on('close', shutdown);
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
