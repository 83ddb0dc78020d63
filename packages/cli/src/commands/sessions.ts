// `veil sessions show`: one request's audit record, readable.
import { CliError, type Command, parseOptions } from '../command.ts';
import { type Io, processIo } from '../evidence/io.ts';
import { loadEvidence } from '../evidence/load.ts';
import { sessionsShowOptionsSchema, validateOptions } from '../evidence/options.ts';
import { findRecord, parseSessionRef, renderRecord } from '../evidence/session.ts';
import { loadTrustedKeys } from '../evidence/trusted.ts';
import { verdictOf, verifySet } from '../evidence/verification.ts';

export async function runSessionsShow(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parseOptions(
    'sessions show',
    args,
    { dir: { type: 'string' }, 'trusted-keys': { type: 'string' } },
    true,
  );
  const options = validateOptions('sessions show', sessionsShowOptionsSchema, values);
  const [text, ...rest] = positionals;
  if (text === undefined || rest.length > 0) {
    throw new CliError('sessions show: name exactly one ID (see veil sessions show --help)');
  }
  const ref = parseSessionRef(text);
  const dir = options.dir;
  const trustedKeys = options['trusted-keys'] ? await loadTrustedKeys(options['trusted-keys']) : undefined;
  const set = await loadEvidence(dir);
  // Only records of batches that pass their checksum are shown: anything else is not evidence.
  const result = verifySet(set, { now: io.now(), minRetentionDays: undefined, trustedKeys });
  const record = findRecord(result.records, ref);
  if (!record) {
    throw new CliError(
      `sessions show: no verified record ${text} in ${dir} (${result.totals.records} records, ${result.totals.requests} requests)`,
      1,
    );
  }
  const stream = result.streams.find((s) => s.stream === record.stream);
  const evidence = { stream, verdict: verdictOf(result), keysPinned: trustedKeys !== undefined };
  for (const line of renderRecord(record, evidence)) io.out(line);
  return 0;
}

export const sessionsShowCommand: Command = {
  summary: "show one request's audit record by its id or <stream>:<seq>",
  help: `Usage: veil sessions show ID [--dir DIR] [--trusted-keys FILE]

Finds one audit record in pulled evidence (veil evidence pull) or a local
evidence store and prints it: who called, what, the outcome, masking actions
and approval with its approvers. ID is the record's ULID or <stream>:<seq>.
A request forwarded to the model is recorded in two parts: either names it,
and its full record is shown. A ULID that more than one verified record
carries (a second stream, signed by a key of its own) is refused with exit
code 1, naming each as <stream>:<seq>. Its evidence line says whether the
record's stream, and the evidence as a whole, verified, and whether the stream
keys were pinned.
Exits 0 when the record is shown; 1 when no verified record, or more than one,
carries ID; 2 on a usage error or evidence that cannot be read.

Options:
  --dir DIR            the evidence directory (default: the current directory)
  --trusted-keys FILE  stream keys you trust, as for veil evidence verify; without it,
                       the evidence line says the keys are not pinned`,
  run: (args) => runSessionsShow(args, processIo),
};
