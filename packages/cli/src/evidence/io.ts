// Where the evidence commands write and what time they take as now: injected,
// so tests run the commands in-process and never depend on the wall clock.
import type { ProgressOutput } from '../progress.ts';

export type Io = {
  /** One line of the command's result, on stdout. */
  out(line: string): void;
  /** Progress and notes, on stderr. */
  err: ProgressOutput;
  now(): Date;
};

export const processIo: Io = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: process.stderr,
  now: () => new Date(),
};
