#!/usr/bin/env node
import { CliError, type Command } from './command.ts';
// `veil`: the command table and help. Each command lives in commands/.
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

function usage(): string {
  const width = Math.max(...Object.keys(commands).map((name) => name.length));
  const lines = Object.entries(commands).map(
    ([name, command]) => `  veil ${name.padEnd(width)}  ${command.summary}`,
  );
  return [
    'veil — SOC 2 grade control for embedding models',
    '',
    'Usage: veil <command> [options]',
    '',
    'Commands:',
    ...lines,
    '',
    'Run `veil <command> --help` for the options of one command.',
    'Set VEIL_DEBUG=1 to see the stack trace of an unexpected error.',
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

async function main(argv: string[]): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    console.log(usage());
    return argv.length === 0 ? 1 : 0;
  }
  const found = resolve(argv);
  if (!found) {
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
