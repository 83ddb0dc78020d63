import { type ParseArgsConfig, parseArgs } from 'node:util';

export interface Command {
  readonly summary: string;
  readonly help: string;
  /** Returns the exit code. */
  run(args: string[]): Promise<number>;
}

/** An error meant for the user: printed as one line, no stack. */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 2) {
    super(message);
    this.exitCode = exitCode;
  }
}

/** parseArgs that turns its errors into a usage message naming the command. */
export function parseOptions<T extends NonNullable<ParseArgsConfig['options']>>(
  command: string,
  args: string[],
  options: T,
  allowPositionals = false,
) {
  try {
    return parseArgs({ args, options, allowPositionals, strict: true });
  } catch (error) {
    // Some of parseArgs' messages span lines (an ambiguous `--port -1`); errors are one line.
    const message = (error as Error).message.replaceAll('\n', ' ');
    throw new CliError(`${command}: ${message} (see veil ${command} --help)`);
  }
}
