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

type Options = NonNullable<ParseArgsConfig['options']>;

/**
 * parseArgs that turns its errors into a usage message naming the command, and
 * refuses an option given twice: parseArgs would keep the last value, so
 * `--min-retention-days 365 --min-retention-days 0` would silently check nothing.
 */
export function parseOptions<T extends Options>(
  command: string,
  args: string[],
  options: T,
  allowPositionals = false,
) {
  const parse = () =>
    parseArgs({
      args: withNegativeValues(args, options),
      options,
      allowPositionals,
      strict: true,
      tokens: true,
    });
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse();
  } catch (error) {
    throw usageError(command, error, options);
  }
  refuseRepeats(command, parsed.tokens, options);
  const { values, positionals } = parsed;
  return { values, positionals };
}

/**
 * `--port -1` as `--port=-1`: parseArgs takes a value that starts with a dash
 * for a forgotten one, and the option's own check then never sees it.
 */
function withNegativeValues(args: string[], options: Options): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg === '--') {
      out.push(...args.slice(i));
      break;
    }
    const name = stringOptionNamed(arg, options);
    const next = args[i + 1];
    if (name !== undefined && next !== undefined && /^-\d/.test(next)) {
      out.push(`--${name}=${next}`);
      i++;
    } else {
      out.push(arg);
    }
  }
  return out;
}

/** The long name of the string option `arg` names (`--port`, `-n`), if it is one. */
function stringOptionNamed(arg: string, options: Options): string | undefined {
  for (const [name, option] of Object.entries(options)) {
    if (option.type !== 'string') continue;
    if (arg === `--${name}` || (option.short !== undefined && arg === `-${option.short}`)) return name;
  }
  return undefined;
}

type Token = NonNullable<ReturnType<typeof parseArgs>['tokens']>[number];

function refuseRepeats(command: string, tokens: readonly Token[], options: Options): void {
  const seen = new Set<string>();
  for (const token of tokens) {
    if (token.kind !== 'option' || options[token.name]?.multiple) continue;
    if (seen.has(token.name)) {
      throw new CliError(`${command}: --${token.name} is given more than once (see veil ${command} --help)`);
    }
    seen.add(token.name);
  }
}

/** parseArgs' own words, on one line, except for an option left without its value. */
function usageError(command: string, error: unknown, options: Options): CliError {
  const { code, message } = error as NodeJS.ErrnoException;
  const see = `(see veil ${command} --help)`;
  const name = /--([A-Za-z][\w-]*)/.exec(message)?.[1];
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && name !== undefined && options[name]) {
    const problem = options[name].type === 'string' ? 'needs a value' : 'takes no value';
    return new CliError(`${command}: --${name} ${problem} ${see}`);
  }
  return new CliError(`${command}: ${message.replaceAll('\n', ' ')} ${see}`);
}
