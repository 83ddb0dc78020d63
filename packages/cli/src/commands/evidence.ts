// `veil evidence pull | verify | report`: the auditor's commands. Each is a
// thin shell: options in, evidence/ and report/ do the work, lines out.
import { type Finding, formatFinding } from '@veil/core';
import { CliError, type Command, parseOptions } from '../command.ts';
import { type Io, processIo } from '../evidence/io.ts';
import type { EvidenceSet } from '../evidence/load.ts';
import {
  pullOptionsSchema,
  reportOptionsSchema,
  timeWindow,
  validateOptions,
  verifyOptionsSchema,
} from '../evidence/options.ts';
import { pullCounts, pullEvidence } from '../evidence/pull.ts';
import { createS3Client } from '../evidence/s3.ts';
import { scopeLines, withEvidence } from '../evidence/source.ts';
import { loadTrustedKeys } from '../evidence/trusted.ts';
import {
  exitCodeOf,
  verdictOf,
  verificationJson,
  verificationLines,
  verifySet,
} from '../evidence/verification.ts';
import { createProgress } from '../progress.ts';
import { buildReport } from '../report/model.ts';
import { writeReport } from '../report/write.ts';

const s3Options = {
  endpoint: { type: 'string' },
  region: { type: 'string' },
  'path-style': { type: 'boolean' },
} as const;

const s3Help = `  --endpoint URL    S3 endpoint (default: AWS S3 itself), with no user, password or query
  --region R        region (default: AWS_REGION, else us-east-1)
  --path-style      address the bucket in the path, as most S3-compatible servers need

Credentials come from the AWS SDK default chain: AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY, AWS_PROFILE, SSO, or the instance role.`;

const verificationHelp = `  --min-retention-days N   every version must be locked at least N days (0 to 36500) after it
                           was written; without it, any COMPLIANCE lock passes and verify warns so
  --trusted-keys FILE      stream keys you trust: a key id (RFC 7638 thumbprint) a line, each
                           optionally followed by the streams it may sign (prod-eu/ml/<pod-uid>/*),
                           or JSON: {"keys": [...]} or an array of Ed25519 JWKs, key ids or
                           {"key": JWK or key id, "streams": "pattern"}; without it, verify warns`;

export async function runPull(args: string[], io: Io): Promise<number> {
  const { values } = parseOptions('evidence pull', args, {
    ...s3Options,
    bucket: { type: 'string' },
    prefix: { type: 'string' },
    from: { type: 'string' },
    to: { type: 'string' },
    out: { type: 'string' },
  });
  const options = validateOptions('evidence pull', pullOptionsSchema, values);
  const window = timeWindow('evidence pull', options.from, options.to);
  const client = createS3Client({
    endpoint: options.endpoint,
    region: options.region,
    pathStyle: options['path-style'],
  });
  try {
    const result = await pullEvidence({
      client,
      endpoint: options.endpoint,
      bucket: options.bucket,
      prefix: options.prefix,
      window,
      out: options.out,
      progress: createProgress({ output: io.err, label: 'pull' }),
      now: io.now,
    });
    io.out(
      `pulled ${result.versions} object versions and ${result.deleteMarkers} delete markers from s3://${options.bucket}/${options.prefix} into ${options.out}: ${pullCounts(result)}`,
    );
    return 0;
  } finally {
    client.destroy();
  }
}

export async function runVerify(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parseOptions(
    'evidence verify',
    args,
    {
      ...s3Options,
      'min-retention-days': { type: 'string' },
      'trusted-keys': { type: 'string' },
      json: { type: 'boolean' },
    },
    true,
  );
  const options = validateOptions('evidence verify', verifyOptionsSchema, values);
  const target = onePositional('evidence verify', positionals, 'DIR or s3://BUCKET/PREFIX');
  const trustedKeys = options['trusted-keys'] ? await loadTrustedKeys(options['trusted-keys']) : undefined;
  const s3 = { endpoint: options.endpoint, region: options.region, pathStyle: options['path-style'] };
  const { result, scope, hint } = await withEvidence('evidence verify', target, s3, io, async (set) => ({
    result: verifySet(set, { now: io.now(), minRetentionDays: options['min-retention-days'], trustedKeys }),
    scope: scopeLines(set),
    hint: noEvidenceHint(target, set),
  }));
  if (options.json) io.out(JSON.stringify({ scope, ...verificationJson(result) }, null, 2));
  else for (const line of [...scope, ...verificationLines(result)]) io.out(line);
  if (result.totals.streams === 0) noEvidence('evidence verify', target, hint, io);
  return exitCodeOf(verdictOf(result));
}

export async function runReport(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parseOptions(
    'evidence report',
    args,
    {
      ...s3Options,
      html: { type: 'string' },
      json: { type: 'string' },
      'csv-dir': { type: 'string' },
      'min-retention-days': { type: 'string' },
      'trusted-keys': { type: 'string' },
    },
    true,
  );
  const options = validateOptions('evidence report', reportOptionsSchema, values);
  const dir = onePositional('evidence report', positionals, 'DIR or s3://BUCKET/PREFIX');
  if (!options.html && !options.json && !options['csv-dir']) {
    throw new CliError('evidence report: name at least one of --html FILE, --json FILE, --csv-dir DIR');
  }
  const trustedKeys = options['trusted-keys'] ? await loadTrustedKeys(options['trusted-keys']) : undefined;
  const now = io.now();
  const minRetentionDays = options['min-retention-days'];
  const s3 = { endpoint: options.endpoint, region: options.region, pathStyle: options['path-style'] };
  const { report, files, hint } = await withEvidence('evidence report', dir, s3, io, async (set) => {
    const report = buildReport(set, verifySet(set, { now, minRetentionDays, trustedKeys }), {
      now,
      minRetentionDays,
    });
    const files = await writeReport(report, {
      html: options.html,
      json: options.json,
      csvDir: options['csv-dir'],
    });
    return { report, files, hint: noEvidenceHint(dir, set) };
  });
  io.out(`${report.verdict}: ${report.summary}`);
  for (const line of invalidLines(report.findings)) io.out(line);
  for (const population of report.populations) io.out(`${population.title}: ${population.count}`);
  for (const file of files) io.out(`wrote ${file}`);
  // Written all the same: the auditor needs the report of a failed verification too.
  if (report.totals.streams === 0) noEvidence('evidence report', dir, hint, io);
  return exitCodeOf(report.verdict);
}

/** Enough of the INVALID findings for the console to say why; the report has them all. */
const invalidShown = 20;

function invalidLines(findings: readonly Finding[]): string[] {
  const invalid = findings.filter((finding) => finding.level === 'INVALID');
  const lines = invalid.slice(0, invalidShown).map(formatFinding);
  if (invalid.length > invalidShown) {
    lines.push(`… and ${invalid.length - invalidShown} more INVALID findings: see the report`);
  }
  return lines;
}

function noEvidence(command: string, target: string, hint: string, io: Io): void {
  io.err.write(`veil: ${command}: no evidence stream found in ${target}: ${hint}\n`);
}

/** Where to look next: the bucket, the pull that made the folder, or the folder itself. */
function noEvidenceHint(target: string, set: EvidenceSet): string {
  if (target.startsWith('s3://')) return 'check the bucket and prefix';
  if (set.bucket) {
    return `it was pulled from s3://${set.bucket.bucket}/${set.bucket.prefix}: check that bucket and prefix, and the pull's --from and --to`;
  }
  return 'its v1/ folder holds no stream: check it is the folder the sidecar writes its evidence to (.veil/audit for veil dev)';
}

function onePositional(command: string, positionals: string[], what: string): string {
  const [first, ...rest] = positionals;
  if (first === undefined || rest.length > 0) {
    throw new CliError(`${command}: name exactly one ${what} (see veil ${command} --help)`);
  }
  return first;
}

export const evidencePullCommand: Command = {
  summary: 'download every evidence object version, lock and checksum from S3',
  help: `Usage: veil evidence pull --bucket B --out DIR [options]

Lists every object version and delete marker under the prefix, downloads each
version with its checksum, Object Lock mode and retain-until, and saves them
with the bucket's Object Lock configuration and versioning status in DIR:
  DIR/bucket.json, DIR/index.ndjson,
  DIR/objects/<key>@<versionId> and <key>@<versionId>.meta.json beside it.
Run it again after an interruption: versions already saved whole, and agreeing
with S3 (time, size, checksum), are skipped; any other is fetched again, and
counted as repaired if the saved copy had been changed. A version S3 holds
no SHA-256 for is fetched again each time. DIR must be empty or an earlier
pull of the same endpoint, bucket and prefix; the pull then also counts, and
names the first few of, the versions the last pull saved that it no longer
lists (deleted since, or outside --from/--to).
Exits 0 once every version is saved; 2 on a usage error and on a failed pull:
S3 unreachable, a missing bucket, refused credentials or access, a DIR that
cannot be written or holds another pull, a listing or a body S3 cut short.

Options:
  --bucket B        the evidence bucket (required)
  --out DIR         where to save (required)
  --prefix P        key prefix (default v1/); for sidecars writing under their own
                    prefix (VEIL_S3_PREFIX=team-a/), give team-a/ or team-a/v1/:
                    keys are saved without it, as the evidence layout names them
  --from T          only streams uploading at or after T
  --to T            ... and at or before T (RFC 3339, or YYYY-MM-DD for the whole day)
                    A stream whose uploads, first to last, overlap the window is pulled
                    whole, so it verifies; verify names the window it was pulled for.
${s3Help}`,
  run: (args) => runPull(args, processIo),
};

export const evidenceVerifyCommand: Command = {
  summary: 'verify evidence: locks, checksums, Merkle roots, signatures, chains, gaps',
  help: `Usage: veil evidence verify DIR | s3://BUCKET/PREFIX [options]

Verifies a pulled directory, a local evidence store (the sidecar's embedded
default, reported as not WORM), or a bucket directly (pulled into a temporary
directory first). Prints one line per finding, "INVALID <stream> <key>: <what>"
or "WARN ...", then "N streams, M batches, K records verified, G gaps".
A pulled directory's store prefix (not signed) and time window, if any, head
the output.
Exits 1 if any finding is INVALID or no evidence stream was found (NO
EVIDENCE: nothing verified is no pass); 2 on a usage error or evidence that
cannot be read (S3 unreachable, a missing bucket, refused credentials, a damaged
or unfinished pull, a --trusted-keys file that cannot be read or parsed); 0 otherwise.

Options:
${verificationHelp}
  --json                   print the findings, streams and totals as JSON
${s3Help}`,
  run: (args) => runVerify(args, processIo),
};

export const evidenceReportCommand: Command = {
  summary: 'write the audit report (HTML, JSON, CSV) with the populations to sample from',
  help: `Usage: veil evidence report DIR | s3://BUCKET/PREFIX [--html FILE] [--json FILE] [--csv-dir DIR] [options]

Verifies the evidence (as veil evidence verify does) and writes the result with the retention status of every object
version and the populations an auditor samples from: requests, denials,
masking actions and approvals with their approvers, each counted per identity
and per day. The HTML file is self-contained and opens offline. --csv-dir
writes requests.csv, denials.csv, masking-actions.csv and approvals.csv.
Name at least one output.

The verdict is VALID, VALID WITH WARNINGS, INVALID, or NO EVIDENCE when no
evidence stream was found. Exits 1 on INVALID or NO EVIDENCE, as verify does,
after writing the report all the same, or when a report file cannot be written;
2 on a usage error or evidence that cannot be read, as verify does; 0 otherwise.

Options:
${verificationHelp}
${s3Help}`,
  run: (args) => runReport(args, processIo),
};
