// The auditor's commands over a local evidence store: the sidecar's embedded
// default, the same keys as plain files with no versions or locks.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type AuditRecordInput, batchKey, manifestKey } from '@veil/core';
import { CliError } from '../src/command.ts';
import { runReport, runVerify } from '../src/commands/evidence.ts';
import { runSessionsShow } from '../src/commands/sessions.ts';
import {
  type BuiltStream,
  buildStream,
  captureIo,
  sampleRecord,
  streamRef,
  writeLocalStore,
} from './support/evidence.ts';

const now = new Date('2025-06-03T00:00:00.000Z');
const veil = join(import.meta.dirname, '..', 'src', 'main.ts');
let root: string;
let built: BuiltStream;
let store: string;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'veil-cli-local-'));
  built = buildStream({
    batches: [
      [0, 1, 2, 3, 4],
      [5, 6, 7],
      [8, 9],
    ],
  });
  store = join(root, 'store');
  await writeLocalStore(store, built.objects);
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

test('a local store verifies, reported as not WORM, and exits 0', async () => {
  const { io, out } = captureIo(now);
  assert.equal(await runVerify([store], io), 0);
  assert.deepEqual(out, [
    'WARN - -: evidence read from a local directory is not WORM storage',
    'WARN - -: no --trusted-keys: stream keys are checked for consistency only, not for who made them',
    '1 streams, 3 batches, 10 records verified, 0 gaps',
  ]);
});

test('the v1 folder itself is accepted as the store', async () => {
  const { io, out } = captureIo(now);
  assert.equal(await runVerify([join(store, 'v1')], io), 0);
  assert.equal(out.at(-1), '1 streams, 3 batches, 10 records verified, 0 gaps');
});

test('a changed batch file in a local store is INVALID and exits 1', async () => {
  const copy = join(root, 'tampered');
  await writeLocalStore(copy, built.objects);
  const key = batchKey(built.prefix, 2);
  const file = join(copy, ...key.split('/'));
  const bytes = await readFile(file);
  bytes[30] = (bytes[30] ?? 0) ^ 0x01;
  await writeFile(file, bytes);
  const { io, out } = captureIo(now);
  assert.equal(await runVerify([copy], io), 1);
  assert.ok(
    out.includes(`INVALID ${built.stream} ${key}: SHA-256 differs from ${manifestKey(built.prefix, 2)}`),
    out.join('\n'),
  );
});

test('verify --json carries each finding with its code', async () => {
  const { io, out } = captureIo(now);
  assert.equal(await runVerify([store, '--json'], io), 0);
  const parsed = JSON.parse(out.join('\n'));
  assert.equal(parsed.verdict, 'VALID WITH WARNINGS');
  assert.deepEqual(
    parsed.findings.map((f: { code: string }) => f.code),
    ['not-worm', 'keys-not-pinned'],
  );
  assert.equal(parsed.totals.records, 10);
});

test('a directory that holds no evidence is refused clearly', async () => {
  const { io } = captureIo(now);
  await assert.rejects(runVerify([root], io), (error: Error) => {
    assert.ok(error instanceof CliError);
    assert.match(error.message, /neither a pulled evidence directory .* nor a local evidence store/);
    return true;
  });
  await assert.rejects(runVerify([join(root, 'absent')], io), /no such directory/);
});

test('a path that is there but cannot be read as a folder is told as it is, never as missing', async () => {
  const { io } = captureIo(now);
  const file = join(root, 'a-file');
  await writeFile(file, 'not evidence');
  await assert.rejects(runVerify([file], io), { message: `${file}: not a directory` });
  const loop = join(root, 'loop');
  await symlink(loop, loop);
  await assert.rejects(runSessionsShow([`${built.stream}:3`, '--dir', loop], io), {
    message: `${loop}: too many symbolic links encountered (ELOOP)`,
  });
});

test('an evidence folder the user may not read is refused as such', async () => {
  const locked = join(root, 'locked');
  await writeLocalStore(locked, built.objects);
  await chmod(root, 0o755);
  await chmod(locked, 0o000);
  try {
    // Root reads every folder: the CLI runs as an unprivileged user then.
    const asUser = process.getuid?.() === 0 ? { uid: 65_534, gid: 65_534 } : {};
    const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      execFile(process.execPath, [veil, 'evidence', 'verify', locked], asUser, (error, _stdout, stderr) =>
        resolve({ code: error ? (error.code as number) : 0, stderr }),
      );
    });
    assert.equal(result.code, 2, 'an error, not a verdict');
    assert.equal(result.stderr.trim(), `veil: ${locked}: permission denied (EACCES)`);
  } finally {
    await chmod(locked, 0o700);
    await chmod(root, 0o700);
  }
});

type CliRun = { code: number | null; stdout: string; stderr: string };

/** The veil binary in a child process: as `nobody` when the tests run as root, which reads every file. */
function runVeil(command: string, args: readonly string[], asUser = false): Promise<CliRun> {
  const user = asUser && process.getuid?.() === 0 ? { uid: 65_534, gid: 65_534 } : {};
  return new Promise((resolve) => {
    execFile(command, args, user, (error, stdout, stderr) =>
      resolve({ code: error ? (error.code as number) : 0, stdout, stderr }),
    );
  });
}

test('a store of more files than the process may hold open at once verifies', async () => {
  // 2 manifests and 1 batch per one-record batch: over 600 files, under a limit of 256 descriptors.
  const large = buildStream({
    ref: streamRef('pod-many'),
    batches: Array.from({ length: 300 }, (_, i) => [i]),
  });
  const many = join(root, 'many');
  await writeLocalStore(many, large.objects);
  assert.ok(large.objects.length > 600);
  const limited = 'ulimit -n 256 && exec "$0" "$@"';
  const result = await runVeil('bash', ['-c', limited, process.execPath, veil, 'evidence', 'verify', many]);
  assert.equal(result.stderr, '');
  assert.equal(result.code, 0);
  assert.equal(
    result.stdout.trim().split('\n').at(-1),
    '1 streams, 300 batches, 300 records verified, 0 gaps',
  );
});

test('an evidence file that cannot be read is an error naming it and its code, exit 2', async () => {
  const unreadable = join(root, 'unreadable');
  await writeLocalStore(unreadable, built.objects);
  const file = join(unreadable, ...batchKey(built.prefix, 2).split('/'));
  await chmod(root, 0o755);
  await chmod(file, 0o000);
  try {
    const result = await runVeil(process.execPath, [veil, 'evidence', 'verify', unreadable], true);
    assert.equal(result.code, 2, 'an error, not a verdict');
    assert.equal(result.stdout, '');
    assert.equal(result.stderr.trim(), `veil: ${file}: permission denied (EACCES)`);
  } finally {
    await chmod(file, 0o644);
    await chmod(root, 0o700);
  }
});

test('sessions show prints one record by its ULID, aligned, with masking and approval', async () => {
  // seq 5: bob, approved by carol; seq 3 is masked and denied.
  const approved = built.records.find((r) => r.seq === 5);
  assert.ok(approved);
  const { io, out } = captureIo(now);
  assert.equal(await runSessionsShow([approved.id.toLowerCase(), '--dir', store], io), 0);
  assert.ok(out.includes(`id        ${approved.id}`), out.join('\n'));
  assert.ok(out.includes('caller    bob (issuer https://issuer.example)'), out.join('\n'));
  assert.ok(
    out.includes('evidence  its stream verified (keys not pinned: pass --trusted-keys)'),
    out.join('\n'),
  );
  assert.ok(out.includes('approval ap-5'), out.join('\n'));
  assert.ok(
    out.some((line) => /^ {4}carol +2025-06-02T00:00:02\.500Z +-$/.test(line)),
    out.join('\n'),
  );
});

test('sessions show finds a record by <stream>:<seq> and shows its masking table', async () => {
  const { io, out } = captureIo(now);
  assert.equal(await runSessionsShow([`${built.stream}:3`, '--dir', store], io), 0);
  assert.ok(out.includes('outcome   denied'), out.join('\n'));
  assert.ok(out.includes('masking: 2 action(s)'), out.join('\n'));
  assert.ok(out.includes('  rule  detector  field     operator  scope    matches'), out.join('\n'));
  assert.ok(out.includes('  pii   email     input[0]  redact    forward  2'), out.join('\n'));
});

test('sessions show says clearly when the record is not there', async () => {
  const { io } = captureIo(now);
  await assert.rejects(runSessionsShow([`${built.stream}:99`, '--dir', store], io), (error: Error) => {
    assert.ok(error instanceof CliError);
    assert.equal(error.exitCode, 1);
    assert.match(error.message, /no verified record .*:99 in .* \(10 records, 10 requests\)/);
    return true;
  });
  await assert.rejects(
    runSessionsShow(['not-an-id', '--dir', store], io),
    /neither a ULID nor <stream>:<seq>/,
  );
});

test('sessions show names every stream:seq of an id more than one verified record carries', async () => {
  // A second stream, self-signed like any, whose records take the first one's ids.
  const copy = buildStream({
    ref: streamRef('another-pod'),
    batches: [[0, 1, 2]],
    recordFor: (stream, seq, ref) => ({
      ...sampleRecord(stream, seq, ref),
      id: built.records.find((r) => r.seq === seq + 5)?.id ?? '',
    }),
  });
  const both = join(root, 'two-streams');
  await writeLocalStore(both, [...built.objects, ...copy.objects]);
  const approved = built.records.find((r) => r.seq === 5);
  assert.ok(approved);
  const { io, out } = captureIo(now);
  await assert.rejects(runSessionsShow([approved.id, '--dir', both], io), (error: Error) => {
    assert.ok(error instanceof CliError);
    assert.equal(error.exitCode, 1);
    const places = [`${copy.stream}:0`, `${built.stream}:5`].sort().join(', ');
    assert.equal(
      error.message,
      `sessions show: 2 verified records have id ${approved.id} (${places}): check their streams' keys (veil evidence verify --trusted-keys), then name one as <stream>:<seq>`,
    );
    return true;
  });
  assert.equal(out.length, 0);
  assert.equal(await runSessionsShow([`${built.stream}:5`, '--dir', both], io), 0);
  assert.ok(out.includes('approval ap-5'), out.join('\n'));
});

test('sessions show checks stream keys against --trusted-keys, as verify does', async () => {
  const trusted = join(root, 'trusted.txt');
  await writeFile(trusted, `${built.key.keyId} ${built.stream}\n`);
  const pinned = captureIo(now);
  assert.equal(
    await runSessionsShow([`${built.stream}:5`, '--dir', store, '--trusted-keys', trusted], pinned.io),
    0,
  );
  assert.ok(pinned.out.includes('evidence  its stream verified'), pinned.out.join('\n'));
  // A stream whose key is not the one trusted vouches for no record.
  const other = join(root, 'other-key.txt');
  await writeFile(other, `${buildStream({ batches: [] }).key.keyId}\n`);
  const { io } = captureIo(now);
  await assert.rejects(
    runSessionsShow([`${built.stream}:5`, '--dir', store, '--trusted-keys', other], io),
    (error: Error) => {
      assert.ok(error instanceof CliError);
      assert.match(error.message, /no verified record .*:5 in .* \(0 records, 0 requests\)/);
      return true;
    },
  );
  await assert.rejects(
    runSessionsShow([`${built.stream}:5`, '--dir', store, '--trusted-keys', join(root, 'absent.txt')], io),
    /--trusted-keys .*absent\.txt: no such file or directory/,
  );
});

test('sessions show does not call a record verified when the evidence around it is INVALID', async () => {
  // A second stream with a batch changed: the first stream verifies, the evidence does not.
  const broken = buildStream({ ref: streamRef('broken-pod'), batches: [[0, 1], [2]] });
  const both = join(root, 'one-broken');
  await writeLocalStore(both, [...built.objects, ...broken.objects]);
  const file = join(both, ...batchKey(broken.prefix, 2).split('/'));
  const bytes = await readFile(file);
  bytes[30] = (bytes[30] ?? 0) ^ 0x01;
  await writeFile(file, bytes);
  const { io, out } = captureIo(now);
  assert.equal(await runSessionsShow([`${built.stream}:5`, '--dir', both], io), 0);
  assert.ok(
    out.includes(
      'evidence  its stream verified, but the evidence has INVALID findings: run veil evidence verify (keys not pinned: pass --trusted-keys)',
    ),
    out.join('\n'),
  );
});

test('a local store asked for a retention marks every stream INVALID, not only the verdict', async () => {
  const { io, out } = captureIo(now);
  assert.equal(await runVerify([store, '--json', '--min-retention-days', '30'], io), 1);
  const parsed = JSON.parse(out.join('\n'));
  assert.equal(parsed.verdict, 'INVALID');
  assert.deepEqual(
    parsed.streams.map((s: { valid: boolean }) => s.valid),
    [false],
  );
});

test('report on a local store writes JSON, HTML and one CSV per population', async () => {
  const out = join(root, 'report');
  const { io, out: lines } = captureIo(now);
  const args = [
    store,
    '--json',
    join(out, 'r.json'),
    '--html',
    join(out, 'r.html'),
    '--csv-dir',
    join(out, 'csv'),
  ];
  assert.equal(await runReport(args, io), 0);
  assert.equal(lines[0], 'VALID WITH WARNINGS: 1 streams, 3 batches, 10 records verified, 0 gaps');
  const report = JSON.parse(await readFile(join(out, 'r.json'), 'utf8'));
  assert.equal(report.source.kind, 'local');
  assert.equal(report.retention.counts['not-worm'], built.objects.length);
  assert.deepEqual(
    report.populations.map((p: { name: string; count: number }) => [p.name, p.count]),
    [
      ['requests', 10],
      ['denials', 4],
      ['masking-actions', 8],
      ['approvals', 3],
    ],
  );
  const denials = await readFile(join(out, 'csv', 'denials.csv'), 'utf8');
  assert.equal(denials.split('\r\n').length, 4 + 2, 'a header, four rows and the final line end');
  const html = await readFile(join(out, 'r.html'), 'utf8');
  assert.match(html, /<div class="verdict warn">VALID WITH WARNINGS<\/div>/);
  assert.match(html, /Local evidence directory .* \(not WORM storage\)/);
});

test('report on evidence with no stream says NO EVIDENCE, styled as a failure, and exits 1', async () => {
  const empty = join(root, 'empty');
  await mkdir(join(empty, 'v1'), { recursive: true });
  const out = join(root, 'empty-report');
  const { io, out: lines, err } = captureIo(now);
  const args = [empty, '--json', join(out, 'r.json'), '--html', join(out, 'r.html')];
  assert.equal(await runReport(args, io), 1);
  assert.equal(lines[0], 'NO EVIDENCE: 0 streams, 0 batches, 0 records verified, 0 gaps');
  assert.match(
    err(),
    /^veil: evidence report: no evidence stream found in .*empty: its v1\/ folder holds no stream: check it is the folder the sidecar writes its evidence to \(\.veil\/audit for veil dev\)\n$/,
  );
  const report = JSON.parse(await readFile(join(out, 'r.json'), 'utf8'));
  assert.equal(report.verdict, 'NO EVIDENCE');
  const html = await readFile(join(out, 'r.html'), 'utf8');
  assert.match(html, /<div class="verdict bad">NO EVIDENCE<\/div>/);

  const verified = captureIo(now);
  assert.equal(await runVerify([empty, '--json'], verified.io), 1);
  assert.equal(JSON.parse(verified.out.join('\n')).verdict, 'NO EVIDENCE');
  assert.match(verified.err(), /in .*empty: its v1\/ folder holds no stream: check it is the folder/);
});

test('a report file whose folder is a file is refused in one line naming that file', async () => {
  const taken = join(root, 'taken.html');
  await writeFile(taken, 'an earlier report');
  const { io } = captureIo(now);
  await assert.rejects(runReport([store, '--html', join(taken, 'x.html')], io), (error: Error) => {
    assert.ok(error instanceof CliError, String(error));
    assert.equal(error.message, `cannot write ${join(taken, 'x.html')}: ${taken} is not a directory`);
    return true;
  });
});

test('report on INVALID evidence still writes the report, then exits 1 as verify does', async () => {
  const copy = join(root, 'tampered-report');
  await writeLocalStore(copy, built.objects);
  await rm(join(copy, ...batchKey(built.prefix, 2).split('/')));
  const out = join(root, 'invalid-report');
  const { io, out: lines } = captureIo(now);
  assert.equal(await runReport([copy, '--json', join(out, 'r.json')], io), 1);
  assert.match(lines[0] ?? '', /^INVALID: /);
  // The console says why, as verify does, one line per INVALID finding.
  assert.ok(
    lines.some((line) => line.startsWith(`INVALID ${built.stream} ${batchKey(built.prefix, 2)}: `)),
    lines.join('\n'),
  );
  assert.ok(
    lines.every((line) => !line.startsWith('WARN ')),
    'warnings stay in the report',
  );
  assert.equal(lines.at(-1), `wrote ${join(out, 'r.json')}`);
  assert.equal(JSON.parse(await readFile(join(out, 'r.json'), 'utf8')).verdict, 'INVALID');
});

test("an approval's own records verify, and the report draws the approvals population from them", async () => {
  const approval = (id: string, minute: number) => ({
    id,
    requestedAt: `2025-06-02T00:0${minute}:00.000Z`,
    approvers: [] as { subject: string; time: string; reason?: string }[],
  });
  const decision = (id: string, minute: number, subject: string, reason: string) => {
    const time = `2025-06-02T00:0${minute}:30.000Z`;
    return { ...approval(id, minute), decidedAt: time, approvers: [{ subject, time, reason }] };
  };
  // As a sidecar writes them: approval.requested, approval.decided, then the request's record.
  const trail: Record<number, Partial<AuditRecordInput>> = {
    1: { kind: 'approval.requested', outcome: 'held', status: null, approval: approval('ml/ea-1', 1) },
    2: { kind: 'approval.decided', status: null, approval: decision('ml/ea-1', 1, 'carol', 'OPS-7') },
    3: { approval: decision('ml/ea-1', 1, 'carol', 'OPS-7') },
    4: { kind: 'approval.requested', outcome: 'held', status: null, approval: approval('ml/ea-2', 2) },
    5: {
      kind: 'approval.decided',
      outcome: 'approval_denied',
      status: null,
      approval: decision('ml/ea-2', 2, 'dave', 'not now'),
    },
    6: { outcome: 'approval_denied', status: 403, approval: decision('ml/ea-2', 2, 'dave', 'not now') },
  };
  const approvals = buildStream({
    batches: [
      [0, 1, 2],
      [3, 4, 5, 6],
    ],
    recordFor: (stream, seq, ref) => {
      const base = sampleRecord(stream, seq, ref);
      const requester = { issuer: 'https://issuer.example', subject: 'alice', groups: ['ml'] };
      const { approval: _none, ...plain } = base;
      return seq in trail
        ? { ...plain, identity: requester, outcome: 'allowed', status: 200, masking: [], ...trail[seq] }
        : plain;
    },
  });
  const dir = join(root, 'approvals');
  await writeLocalStore(dir, approvals.objects);

  const verified = captureIo(now);
  assert.equal(await runVerify([dir], verified.io), 0);
  assert.equal(verified.out.at(-1), '1 streams, 2 batches, 7 records verified, 0 gaps');

  const out = join(root, 'approvals-report');
  const { io } = captureIo(now);
  assert.equal(await runReport([dir, '--json', join(out, 'r.json'), '--csv-dir', join(out, 'csv')], io), 0);
  const report = JSON.parse(await readFile(join(out, 'r.json'), 'utf8'));
  assert.deepEqual(
    report.populations.map((p: { name: string; count: number }) => [p.name, p.count]),
    [
      ['requests', 3],
      ['denials', 1],
      ['masking-actions', 2],
      ['approvals', 2],
    ],
  );
  const csv = (await readFile(join(out, 'csv', 'approvals.csv'), 'utf8')).split('\r\n');
  const header = csv[0]?.split(',') ?? [];
  const rows = csv.slice(1, -1).map((line) => line.split(','));
  const cells = (name: string) => rows.map((row) => row[header.indexOf(name)]);
  assert.deepEqual(cells('approval_id'), ['ml/ea-1', 'ml/ea-2']);
  assert.deepEqual(cells('requester_subject'), ['alice', 'alice']);
  assert.deepEqual(cells('requested_at'), ['2025-06-02T00:01:00.000Z', '2025-06-02T00:02:00.000Z']);
  assert.deepEqual(cells('approvers'), ['"carol at 2025-06-02T00:01:30.000Z: ""OPS-7"""', '']);
  assert.deepEqual(cells('denied_by'), ['', '"dave at 2025-06-02T00:02:30.000Z: ""not now"""']);
  assert.deepEqual(cells('request_outcomes'), ['allowed', 'approval_denied']);
  // Each row leads to the approval.requested record, which sessions show retrieves.
  assert.deepEqual(cells('seq'), ['1', '4']);
});

test('a request recorded in two parts is shown and counted once, by either part', async () => {
  // seq 2 is the first part of the request seq 4 completes, across a batch; seq 6 was cut off.
  let firstPartId = '';
  const split = buildStream({
    batches: [
      [0, 1, 2, 3],
      [4, 5, 6],
    ],
    recordFor: (stream, seq, ref) => {
      const { approval: _none, vectors, ...base } = sampleRecord(stream, seq, ref);
      if (seq === 2 || seq === 6) {
        if (seq === 2) firstPartId = base.id;
        return { ...base, outcome: 'incomplete', status: null };
      }
      if (seq !== 4) return { ...base, vectors };
      const identity = { issuer: 'https://issuer.example', subject: 'alice', groups: ['ml'] };
      return { ...base, outcome: 'allowed', status: 200, identity, vectors, completes: firstPartId };
    },
  });
  const dir = join(root, 'split');
  await writeLocalStore(dir, split.objects);

  const verified = captureIo(now);
  assert.equal(await runVerify([dir, '--json'], verified.io), 0);
  const result = JSON.parse(verified.out.join('\n'));
  assert.deepEqual([result.totals.records, result.totals.requests, result.totals.incomplete], [7, 6, 1]);
  assert.deepEqual(
    result.findings.map((f: { code: string }) => f.code),
    ['not-worm', 'incomplete-record', 'keys-not-pinned'],
  );

  for (const ref of [`${split.stream}:2`, firstPartId, `${split.stream}:4`]) {
    const { io, out } = captureIo(now);
    assert.equal(await runSessionsShow([ref, '--dir', dir], io), 0);
    assert.ok(out.includes('seq        4'), `${ref}: ${out.join('\n')}`);
    assert.ok(out.includes(`completes  ${firstPartId}, its first part, recorded as it went to the model`));
    assert.ok(out.includes('outcome    allowed'), out.join('\n'));
  }
  const cutOff = captureIo(now);
  assert.equal(await runSessionsShow([`${split.stream}:6`, '--dir', dir], cutOff.io), 0);
  assert.ok(cutOff.out.includes('outcome   incomplete'), cutOff.out.join('\n'));
  assert.ok(cutOff.out.includes('status    none sent'), cutOff.out.join('\n'));

  const out = join(root, 'split-report');
  const { io } = captureIo(now);
  assert.equal(await runReport([dir, '--json', join(out, 'r.json'), '--html', join(out, 'r.html')], io), 0);
  const report = JSON.parse(await readFile(join(out, 'r.json'), 'utf8'));
  assert.equal(report.populations.find((p: { name: string }) => p.name === 'requests').count, 6);
  const html = await readFile(join(out, 'r.html'), 'utf8');
  assert.ok(html.includes('<b>6</b>Requests'));
  assert.ok(html.includes('<b>1</b>Incomplete requests'));
});
