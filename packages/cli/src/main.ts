#!/usr/bin/env node
// `veil`: the command table and help. Each command lives in commands/.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { CliError, type Command } from './command.ts';
import {
  approvalsApproveCommand,
  approvalsDenyCommand,
  approvalsListCommand,
  approvalsShowCommand,
} from './commands/approvals.ts';
import { devCommand, devTokenCommand } from './commands/dev.ts';
import { evidencePullCommand, evidenceReportCommand, evidenceVerifyCommand } from './commands/evidence.ts';
import { policyLintCommand } from './commands/policy.ts';
import { sessionsShowCommand } from './commands/sessions.ts';
import { fsReason } from './fserror.ts';

const commands: Record<string, Command> = {
  'approvals list': approvalsListCommand,
  'approvals show': approvalsShowCommand,
  'approvals approve': approvalsApproveCommand,
  'approvals deny': approvalsDenyCommand,
  dev: devCommand,
  'dev token': devTokenCommand,
  'evidence pull': evidencePullCommand,
  'evidence verify': evidenceVerifyCommand,
  'evidence report': evidenceReportCommand,
  'policy lint': policyLintCommand,
  'sessions show': sessionsShowCommand,
};

function commandLines(names: string[]): string[] {
  const width = Math.max(...names.map((name) => name.length));
  return names.map((name) => `  veil ${name.padEnd(width)}  ${commands[name]?.summary ?? ''}`);
}

function usage(): string {
  return [
    'veil — SOC 2 grade control for embedding models',
    '',
    'Usage: veil <command> [options]',
    '',
    'Commands:',
    ...commandLines(Object.keys(commands)),
    '',
    'Run `veil <command> --help` for the options of one command, `veil --version` for the version.',
    'Exit codes: 0 success, 1 a failure the command found or met, 2 a usage error',
    "and, for some commands, input they cannot read or reach: each command's help says which.",
    'Set VEIL_DEBUG=1 to see the stack trace of an unexpected error.',
  ].join('\n');
}

/** The commands under a first word that is not a command itself (`evidence`, `approvals`). */
function groupUsage(group: string): string | undefined {
  if (commands[group]) return undefined;
  const names = Object.keys(commands).filter((name) => name.startsWith(`${group} `));
  if (names.length === 0) return undefined;
  return [
    `Usage: veil ${group} <command> [options]`,
    '',
    'Commands:',
    ...commandLines(names),
    '',
    `Run \`veil ${group} <command> --help\` for the options of one command.`,
  ].join('\n');
}

/** Finds the longest command name that prefixes argv ("dev token" before "dev"). */
function resolve(argv: string[]): { command: Command; args: string[] } | undefined {
  for (let words = Math.min(argv.length, 3); words > 0; words--) {
    const command = commands[argv.slice(0, words).join(' ')];
    if (command) return { command, args: argv.slice(words) };
  }
  return undefined;
}

const isHelp = (arg: string | undefined): boolean => arg === '--help' || arg === '-h';

async function version(): Promise<string> {
  const text = await readFile(join(import.meta.dirname, '..', 'package.json'), 'utf8');
  return z.object({ version: z.string() }).parse(JSON.parse(text)).version;
}

/** `veil help [COMMAND…]`: the help of that command or group; exit 2 for a name that is neither. */
function help(words: string[]): number {
  if (words.length === 0) {
    console.log(usage());
    return 0;
  }
  const name = words.join(' ');
  const text = commands[name]?.help ?? groupUsage(name);
  if (text === undefined) {
    console.error(`veil: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  console.log(text);
  return 0;
}

/** `veil evidence --help` (exit 0) or `veil evidence` alone (exit 2: nothing ran) lists that group. */
function listGroup(argv: string[]): number | undefined {
  const [name, ...rest] = argv;
  const text = name === undefined ? undefined : groupUsage(name);
  if (text === undefined || rest.length > 1 || (rest.length === 1 && !isHelp(rest[0]))) return undefined;
  if (rest.length === 0) {
    console.error(text);
    return 2;
  }
  console.log(text);
  return 0;
}

async function main(argv: string[]): Promise<number> {
  if (argv.length === 0) {
    console.log(usage());
    return 1;
  }
  if (isHelp(argv[0])) return help([]);
  if (argv[0] === 'help') return help(argv.slice(1));
  if (argv[0] === '--version') {
    console.log(await version());
    return 0;
  }
  const found = resolve(argv);
  if (!found) {
    const listed = listGroup(argv);
    if (listed !== undefined) return listed;
    console.error(`veil: unknown command "${argv.join(' ')}"\n\n${usage()}`);
    return 2;
  }
  if (found.args.includes('--help') || found.args.includes('-h')) {
    console.log(found.command.help);
    return 0;
  }
  try {
    return await found.command.run(found.args);
  } catch (error) {
    if (error instanceof CliError) {
      console.error(`veil: ${error.message}`);
      return error.exitCode;
    }
    // A stack means nothing to most users; whoever reports a bug can ask for it.
    const message = error instanceof Error ? error.message : String(error);
    console.error(process.env.VEIL_DEBUG ? error : `veil: ${message}`);
    return 1;
  }
}

/**
 * A reader that stops early (`veil evidence verify DIR | head -1`) closes the
 * pipe: what the command would still print has nowhere to go, but its exit
 * code, INVALID's 1 above all, still says what it found. So the command runs
 * on, unheard, and exits as it would have.
 */
function keepRunningWithoutStdout(): void {
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') return;
    console.error(`veil: cannot write the output: ${fsReason(error)}`);
    process.exit(1);
  });
}

keepRunningWithoutStdout();
process.exitCode = await main(process.argv.slice(2));
