// `veil evidence pull / verify / report` against a real S3 server with
// versioning and Object Lock: evidence built with core's builders, uploaded
// the way the shipper does (COMPLIANCE lock, SHA-256 checksum, If-None-Match).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  type FileHandle,
  mkdir,
  mkdtemp,
  open,
  readdir,
  readFile,
  readlink,
  realpath,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  ListObjectVersionsCommand,
  PutObjectCommand,
  PutObjectRetentionCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { type AuditRecord, batchKey, manifestKey, maxManifestBytes, sha256Base64 } from '@veil/core';
import { CliError } from '../../../packages/cli/src/command.ts';
import { runPull, runReport, runVerify } from '../../../packages/cli/src/commands/evidence.ts';
import { runSessionsShow } from '../../../packages/cli/src/commands/sessions.ts';
import { pullEvidence } from '../../../packages/cli/src/evidence/pull.ts';
import { maxBatchObjectBytes } from '../../../packages/cli/src/evidence/store.ts';
import { createProgress } from '../../../packages/cli/src/progress.ts';
import {
  type BuiltStream,
  buildStream,
  captureIo,
  streamRef,
  upload,
} from '../../../packages/cli/test/support/evidence.ts';
import { freePort, type S3Server, startS3 } from '../../harness/index.ts';

/** What verify says when the auditor pins no stream keys, as here. */
const notPinned =
  'WARN - -: no --trusted-keys: stream keys are checked for consistency only, not for who made them';
/** What verify says first when the auditor asks for no minimum retention, as here. */
const unchecked = 'WARN - -: retention length not checked: pass --min-retention-days';

const cliMain = join(import.meta.dirname, '..', '..', '..', 'packages', 'cli', 'src', 'main.ts');
/** Long enough to outlast the test; the server's data is removed with it. */
const retentionMs = 120_000;

let s3: S3Server;
let client: S3Client;
let work: string;
let uploadedAt: Date;
let streams: BuiltStream[];
const savedEnv = { ...process.env };

before(async () => {
  s3 = await startS3();
  client = s3.client();
  work = await mkdtemp(join(tmpdir(), 'veil-e2e-pull-'));
  // The commands take credentials from the AWS SDK default chain, as an auditor's shell would.
  process.env.AWS_ACCESS_KEY_ID = s3.credentials.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = s3.credentials.secretAccessKey;
  process.env.AWS_REGION = s3.region;
  delete process.env.AWS_PROFILE;
  streams = [
    buildStream({
      ref: streamRef('pod-a'),
      batches: [
        [0, 1, 2, 3, 4],
        [5, 6, 7, 8, 9],
        [10, 11, 12],
      ],
    }),
    buildStream({
      ref: streamRef('pod-b', '1'),
      batches: [
        [0, 1, 2],
        [3, 4],
      ],
    }),
  ];
  await client.send(new CreateBucketCommand({ Bucket: 'clean', ObjectLockEnabledForBucket: true }));
  uploadedAt = new Date();
  const retainUntil = new Date(uploadedAt.getTime() + retentionMs);
  for (const stream of streams) await upload(client, 'clean', stream.objects, { retainUntil });
});

after(async () => {
  client?.destroy();
  await s3?.destroy();
  if (work) await rm(work, { recursive: true, force: true });
  for (const name of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_REGION', 'AWS_PROFILE']) {
    if (savedEnv[name] === undefined) delete process.env[name];
    else process.env[name] = savedEnv[name];
  }
});

const s3Args = () => ['--endpoint', s3.endpoint, '--path-style'];
const objectCount = () => streams.reduce((n, s) => n + s.objects.length, 0);
const allRecords = (): AuditRecord[] => streams.flatMap((s) => s.records);

/** Pulls the bucket `clean` unless `extra` names another. */
async function pull(out: string, ...extra: string[]) {
  const captured = captureIo(uploadedAt);
  const bucket = extra.includes('--bucket') ? [] : ['--bucket', 'clean'];
  const code = await runPull([...s3Args(), ...bucket, '--out', out, ...extra], captured.io);
  return { code, ...captured };
}

test('a clean evidence set pulls with its locks, verifies, and reports the records uploaded', async () => {
  const dir = join(work, 'clean');
  const pulled = await pull(dir);
  assert.equal(pulled.code, 0);
  assert.equal(
    pulled.out[0],
    `pulled 14 object versions and 0 delete markers from s3://clean/v1/ into ${dir}: 14 downloaded, 0 already present, 0 repaired`,
  );
  assert.equal(objectCount(), 14);
  assert.match(pulled.err(), /^pull: 0\/14 objects, 0 B\/[\d.]+ KiB \(0%\)\n/);
  assert.match(
    pulled.err(),
    /pull: 14\/14 objects, .* \(100%\), 14 downloaded, 0 already present, 0 repaired\n$/,
  );

  const bucket = JSON.parse(await readFile(join(dir, 'bucket.json'), 'utf8'));
  assert.equal(bucket.versioning, 'Enabled');
  assert.equal(bucket.objectLock.enabled, true);
  const index = (await readFile(join(dir, 'index.ndjson'), 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.equal(index.length, 14);
  for (const meta of index) {
    const bytes = await readFile(join(dir, meta.file));
    assert.equal(meta.checksumSHA256, sha256Base64(bytes), meta.key);
    assert.equal(meta.lockMode, 'COMPLIANCE', meta.key);
    // S3 keeps retain-until to the second.
    assert.equal(
      Math.floor(Date.parse(meta.retainUntil) / 1000),
      Math.floor((uploadedAt.getTime() + retentionMs) / 1000),
    );
    assert.deepEqual(JSON.parse(await readFile(join(dir, `${meta.file}.meta.json`), 'utf8')), meta);
  }

  // The auditor pins each stream's key to its stream, as one who collected them from the pods would.
  const trusted = join(work, 'trusted-keys');
  await writeFile(trusted, streams.map((s) => `${s.key.keyId} ${s.stream}\n`).join(''));
  const verified = captureIo(uploadedAt);
  // The locks here last seconds: any length passes, yet it is checked, so no finding says it was not.
  const checked = ['--trusted-keys', trusted, '--min-retention-days', '0'];
  assert.equal(await runVerify([dir, ...checked], verified.io), 0);
  assert.deepEqual(verified.out, ['2 streams, 5 batches, 18 records verified, 0 gaps']);

  const reported = captureIo(uploadedAt);
  const files = { json: join(work, 'report.json'), html: join(work, 'report.html'), csv: join(work, 'csv') };
  const args = [dir, ...checked, '--json', files.json, '--html', files.html, '--csv-dir', files.csv];
  assert.equal(await runReport(args, reported.io), 0);
  const report = JSON.parse(await readFile(files.json, 'utf8'));
  const records = allRecords();
  const denied = [
    'denied',
    'unauthenticated',
    'rate_limited',
    'too_large',
    'invalid',
    'approval_denied',
    'approval_expired',
  ];
  const expected = {
    requests: records.length,
    denials: records.filter((r) => denied.includes(r.outcome)).length,
    'masking-actions': records.reduce((n, r) => n + r.masking.length, 0),
    // One member per approval: both pods' records name an ap-1 of the same cluster.
    approvals: new Set(records.flatMap((r) => (r.approval ? [r.approval.id] : []))).size,
  };
  assert.deepEqual(expected, { requests: 18, denials: 6, 'masking-actions': 14, approvals: 3 });
  assert.deepEqual(
    Object.fromEntries(report.populations.map((p: { name: string; count: number }) => [p.name, p.count])),
    expected,
  );
  assert.equal(report.verdict, 'VALID');
  assert.equal(report.retention.counts.locked, 14);
  const requests = report.populations[0];
  const bob = records.filter((r) => r.identity?.subject === 'bob').length;
  assert.deepEqual(
    requests.byIdentity.find((i: { subject: string | null }) => i.subject === 'bob'),
    { issuer: 'https://issuer.example', subject: 'bob', count: bob },
  );
  assert.deepEqual(requests.byDay, [
    { day: '2025-06-01', count: 4 },
    { day: '2025-06-02', count: 14 },
  ]);
  for (const [name, count] of Object.entries(expected)) {
    const csv = await readFile(join(files.csv, `${name}.csv`), 'utf8');
    assert.equal(csv.split('\r\n').length - 2, count, name);
  }
  assert.match(await readFile(files.html, 'utf8'), /<div class="verdict good">VALID<\/div>/);

  const record = streams[1]?.records[3];
  assert.ok(record);
  const shown = captureIo(uploadedAt);
  assert.equal(await runSessionsShow([record.id, '--dir', dir, '--trusted-keys', trusted], shown.io), 0);
  assert.ok(shown.out.includes(`seq       3`), shown.out.join('\n'));
  assert.ok(shown.out.includes('evidence  its stream verified'), shown.out.join('\n'));
  assert.ok(shown.out.includes(`stream    ${record.stream}`), shown.out.join('\n'));
});

test('evidence a sidecar writes under a key prefix (VEIL_S3_PREFIX) pulls and verifies clean', async () => {
  await client.send(new CreateBucketCommand({ Bucket: 'prefixed', ObjectLockEnabledForBucket: true }));
  const retainUntil = new Date(uploadedAt.getTime() + retentionMs);
  const underPrefix = (prefix: string) =>
    streams
      .flatMap((stream) => stream.objects)
      .map((object) => ({ ...object, key: `${prefix}${object.key}` }));
  await upload(client, 'prefixed', underPrefix('team-a/'), { retainUntil });
  // A neighbour whose prefix starts the same: never part of team-a's evidence.
  await upload(client, 'prefixed', underPrefix('team-ab/'), { retainUntil });
  for (const prefix of ['team-a/v1/', 'team-a/', 'team-a']) {
    const dir = join(work, `prefixed-${prefix.replaceAll('/', '_')}`);
    const captured = captureIo(uploadedAt);
    const args = [...s3Args(), '--bucket', 'prefixed', '--prefix', prefix, '--out', dir];
    assert.equal(await runPull(args, captured.io), 0, captured.err());
    const verified = captureIo(uploadedAt);
    assert.equal(await runVerify([dir], verified.io), 0, `${prefix}: ${verified.out.join('\n')}`);
    // The prefix is outside what the manifests sign: the output says which it was, first.
    assert.equal(
      verified.out[0],
      'pulled from prefix team-a/ of s3://prefixed: the prefix is not signed, only the stream names under it (cluster/namespace/pod-uid/incarnation)',
      prefix,
    );
    assert.equal(verified.out.at(-1), '2 streams, 5 batches, 18 records verified, 0 gaps', prefix);
  }
});

test('a second pull downloads nothing; after an interruption only the rest is fetched', async () => {
  const dir = join(work, 'resume');
  assert.match((await pull(dir)).out[0] ?? '', /: 14 downloaded, 0 already present, 0 repaired$/);
  assert.match((await pull(dir)).out[0] ?? '', /: 0 downloaded, 14 already present, 0 repaired$/);

  // An interruption leaves no index and some versions unsaved; a damaged file is fetched again too.
  await rm(join(dir, 'index.ndjson'));
  const batches = join(dir, 'objects', ...streams[0]!.prefix.split('/'), 'batches');
  const [first, second, third] = (await readdir(batches)).filter((f) => !f.endsWith('.meta.json')).sort();
  assert.ok(first && second && third);
  await rm(join(batches, first));
  await rm(join(batches, `${second}.meta.json`));
  await writeFile(join(batches, third), 'damaged');
  const unfinished = captureIo(uploadedAt);
  await assert.rejects(runVerify([dir], unfinished.io), /holds an unfinished pull \(no index.ndjson\)/);

  assert.match((await pull(dir)).out[0] ?? '', /: 3 downloaded, 11 already present, 0 repaired$/);
  const verified = captureIo(uploadedAt);
  assert.equal(await runVerify([dir], verified.io), 0);
  assert.deepEqual(verified.out, [unchecked, notPinned, '2 streams, 5 batches, 18 records verified, 0 gaps']);
});

test('a pulled directory edited since is repaired by pulling again, not trusted as it stands', async () => {
  const dir = join(work, 'edited');
  assert.equal((await pull(dir)).code, 0);
  // What a pull takes from the version itself; its lock is read afresh each time.
  const content = async () =>
    (await readFile(join(dir, 'index.ndjson'), 'utf8'))
      .trim()
      .split('\n')
      .map((line) => {
        const { lockMode, retainUntil, ...rest } = JSON.parse(line);
        return rest;
      });
  const original = await content();
  const batches = join(dir, 'objects', ...streams[0]!.prefix.split('/'), 'batches');
  const [first, second, third] = (await readdir(batches)).filter((f) => !f.endsWith('.meta.json')).sort();
  assert.ok(first && second && third);
  const readMeta = async (file: string) =>
    JSON.parse(await readFile(join(batches, `${file}.meta.json`), 'utf8'));
  const writeMeta = (file: string, meta: unknown) =>
    writeFile(join(batches, `${file}.meta.json`), JSON.stringify(meta));
  // The first batch's time moved back a year; the second batch's bytes and metadata made the first's.
  const firstMeta = await readMeta(first);
  await writeMeta(first, { ...firstMeta, lastModified: '2024-06-01T00:00:00.000Z' });
  const secondMeta = await readMeta(second);
  const { sha256, checksumSHA256, size } = firstMeta;
  await writeMeta(second, { ...secondMeta, sha256, checksumSHA256, size });
  await writeFile(join(batches, second), await readFile(join(batches, first)));
  // The third batch made a delete marker, for verify to report one S3 does not hold.
  await writeMeta(third, { ...(await readMeta(third)), isDeleteMarker: true });

  assert.match((await pull(dir)).out[0] ?? '', /: 0 downloaded, 11 already present, 3 repaired$/);
  assert.deepEqual(await content(), original);
  assert.match((await pull(dir)).out[0] ?? '', /: 0 downloaded, 14 already present, 0 repaired$/);
});

test('the same endpoint with a trailing / is the same source: a second pull downloads nothing', async () => {
  const dir = join(work, 'slash');
  assert.equal((await pull(dir)).code, 0);
  const captured = captureIo(uploadedAt);
  const args = ['--endpoint', `${s3.endpoint}/`, '--path-style', '--bucket', 'clean', '--out', dir];
  assert.equal(await runPull(args, captured.io), 0);
  assert.match(captured.out[0] ?? '', /: 0 downloaded, 14 already present, 0 repaired$/);
  assert.equal(JSON.parse(await readFile(join(dir, 'bucket.json'), 'utf8')).endpoint, s3.endpoint);
});

test('a pull names the versions the last pull saved that it no longer lists', async () => {
  const dir = join(work, 'narrowed');
  assert.equal((await pull(dir)).code, 0);
  const narrowed = await pull(dir, '--to', '2000-01-01');
  assert.match(
    narrowed.out[0] ?? '',
    /^pulled 0 object versions .*: 0 downloaded, 0 already present, 0 repaired, 14 saved by the last pull no longer listed \(deleted from the bucket since, or outside this window: v1\/\S+ version \S+, v1\/\S+ version \S+, v1\/\S+ version \S+, …\)$/,
  );
  assert.match(narrowed.err(), /14 saved by the last pull no longer listed/);
  // Compared with the last pull only: the narrowed one listed nothing, so nothing is missing from it.
  assert.match((await pull(dir)).out[0] ?? '', /: 0 downloaded, 14 already present, 0 repaired$/);
  assert.deepEqual((await readdir(dir)).sort(), ['bucket.json', 'index.ndjson', 'objects']);
});

test('a listing of more than one page counts each version once', async () => {
  // Listings come in pages of 1000; the gateway repeats the marker version at the top of the next page.
  const built = buildStream({
    ref: streamRef('pod-many'),
    batches: Array.from({ length: 500 }, (_, i) => [i]),
  });
  assert.equal(built.objects.length, 1002);
  await client.send(new CreateBucketCommand({ Bucket: 'many', ObjectLockEnabledForBucket: true }));
  const retainUntil = new Date(uploadedAt.getTime() + retentionMs);
  const lanes = 16;
  await Promise.all(
    Array.from({ length: lanes }, (_, lane) =>
      upload(
        client,
        'many',
        built.objects.filter((_, index) => index % lanes === lane),
        { retainUntil },
      ),
    ),
  );
  const dir = join(work, 'many');
  const captured = captureIo(uploadedAt);
  assert.equal(
    await runPull([...s3Args(), '--bucket', 'many', '--out', dir], captured.io),
    0,
    captured.err(),
  );
  assert.match(
    captured.out[0] ?? '',
    /^pulled 1002 object versions and 0 delete markers .*: 1002 downloaded, 0 already present, 0 repaired$/,
  );
  const index = (await readFile(join(dir, 'index.ndjson'), 'utf8')).trim().split('\n');
  assert.equal(index.length, 1002);
  const verified = captureIo(uploadedAt);
  assert.equal(await runVerify([dir], verified.io), 0);
  assert.deepEqual(verified.out, [
    unchecked,
    notPinned,
    '1 streams, 500 batches, 500 records verified, 0 gaps',
  ]);
});

test('each saved file is synced before the index that says the pull is finished', async () => {
  const dir = join(work, 'synced');
  // Which file each sync was for, in order: the fd's name at the time (a file is synced before its rename).
  const synced: string[] = [];
  const probe = await open(cliMain, 'r');
  const fileHandle = Object.getPrototypeOf(probe) as FileHandle;
  await probe.close();
  const { sync } = fileHandle;
  fileHandle.sync = async function (this: FileHandle) {
    synced.push(await readlink(`/proc/self/fd/${this.fd}`));
    return sync.call(this);
  };
  try {
    assert.equal((await pull(dir)).code, 0);
  } finally {
    fileHandle.sync = sync;
  }
  const root = await realpath(dir);
  const index = synced.indexOf(join(root, 'index.ndjson.partial'));
  assert.ok(index >= 0, synced.join('\n'));
  const before = new Set(synced.slice(0, index));
  const metas = (await readFile(join(dir, 'index.ndjson'), 'utf8'))
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as { file: string });
  assert.equal(metas.length, 14);
  for (const { file } of metas) {
    assert.ok(before.has(join(root, `${file}.partial`)), `${file} is not synced before the index`);
    // Its name, and each directory's on the way, in the directory holding it.
    for (let at = dirname(file); at !== '.'; at = dirname(at)) {
      assert.ok(before.has(join(root, at)), `${at} is not synced before the index`);
    }
  }
  assert.ok(before.has(root));
});

test('a saved file damaged after the pull is named as such, not as tampering, and a pull mends it', async () => {
  const dir = join(work, 'damaged');
  assert.equal((await pull(dir)).code, 0);
  // What a power loss can leave of a file written but never synced: its name on no bytes.
  const batches = join(dir, 'objects', ...streams[0]!.prefix.split('/'), 'batches');
  const [first] = (await readdir(batches)).filter((f) => !f.endsWith('.meta.json')).sort();
  assert.ok(first);
  await writeFile(join(batches, first), '');
  const damaged = captureIo(uploadedAt);
  await assert.rejects(runVerify([dir], damaged.io), (error: Error) => {
    assert.ok(error instanceof CliError);
    assert.equal(error.exitCode, 2);
    assert.match(
      error.message,
      /holds a damaged pull \(objects\/.*\/batches\/.* no longer has the SHA-256 it was pulled with\): run veil evidence pull again$/,
    );
    return true;
  });
  await rm(join(batches, first));
  await assert.rejects(runVerify([dir], damaged.io), /holds a damaged pull \(objects\/.* is missing\)/);
  // A file there but unreadable is no missing one: the error is told with its code.
  await mkdir(join(batches, first));
  await assert.rejects(runVerify([dir], damaged.io), (error: Error) => {
    assert.ok(error instanceof CliError);
    assert.equal(error.exitCode, 2);
    assert.match(error.message, /: cannot read objects\/.*\/batches\/.*: .* \(EISDIR\)$/);
    return true;
  });
  await rm(join(batches, first), { recursive: true });

  assert.match((await pull(dir)).out[0] ?? '', /: 1 downloaded, 13 already present, 0 repaired$/);
  const verified = captureIo(uploadedAt);
  assert.equal(await runVerify([dir], verified.io), 0);
  assert.deepEqual(verified.out, [unchecked, notPinned, '2 streams, 5 batches, 18 records verified, 0 gaps']);
});

test('a pull that fails half way on a terminal ends the bar line before the error is printed', async () => {
  const good = join(work, 'bar-good');
  await pull(good);
  const batches = (dir: string) => join(dir, 'objects', ...streams[0]!.prefix.split('/'), 'batches');
  const [first] = (await readdir(batches(good))).filter((f) => !f.endsWith('.meta.json')).sort();
  assert.ok(first);
  // A directory where a batch is to be written again: the pull fails on it after it has begun.
  const failing = join(work, 'bar-failing');
  await pull(failing);
  await rm(join(batches(failing), first));
  await rm(join(batches(failing), `${first}.meta.json`));
  await mkdir(join(batches(failing), first, 'in-the-way'), { recursive: true });
  const writes: string[] = [];
  const output = { isTTY: true, columns: 100, write: (text: string) => writes.push(text) };
  await assert.rejects(
    pullEvidence({
      client,
      endpoint: s3.endpoint,
      bucket: 'clean',
      prefix: 'v1/',
      window: { from: undefined, before: undefined },
      out: failing,
      progress: createProgress({ output, label: 'pull', redrawIntervalMs: 0 }),
    }),
  );
  assert.ok(writes[0]?.startsWith('\r\x1b[Kpull ['), writes[0]);
  assert.equal(writes.at(-1), '\n');
});

test('a window of object time selects whole streams', async () => {
  const none = await pull(join(work, 'window-none'), '--to', '2000-01-01');
  assert.match(none.out[0] ?? '', /^pulled 0 object versions and 0 delete markers/);
  const all = await pull(join(work, 'window-all'), '--from', '2000-01-01');
  assert.match(all.out[0] ?? '', /^pulled 14 object versions/);
  // Nothing to verify is no evidence: never a pass.
  const empty = captureIo(uploadedAt);
  assert.equal(await runVerify([join(work, 'window-none')], empty.io), 1);
  assert.match(empty.err(), /no evidence stream found in .*window-none/);
  // What was left out of the pull is said where the verdict is read.
  const verified = captureIo(uploadedAt);
  assert.equal(await runVerify([join(work, 'window-all')], verified.io), 0);
  assert.equal(
    verified.out[0],
    'pulled for 2000-01-01T00:00:00.000Z.. (upload time, end excluded): streams uploading only before or only after it were not checked',
  );
  assert.equal(verified.out.at(-1), '2 streams, 5 batches, 18 records verified, 0 gaps');
});

test('a stream that uploaded before and after a window, but not in it, is pulled whole', async () => {
  const built = buildStream({
    ref: streamRef('pod-pause'),
    batches: [
      [0, 1],
      [2, 3],
    ],
  });
  await client.send(new CreateBucketCommand({ Bucket: 'paused', ObjectLockEnabledForBucket: true }));
  const retainUntil = new Date(uploadedAt.getTime() + retentionMs);
  // The genesis and first batch, then, after an outage, the second batch with records from during it.
  await upload(client, 'paused', built.objects.slice(0, 3), { retainUntil });
  // The store keeps upload times to the second: the second part goes up in a later second.
  await new Promise((resolve) => setTimeout(resolve, 1100));
  await upload(client, 'paused', built.objects.slice(3), { retainUntil });
  const { Versions = [] } = await client.send(new ListObjectVersionsCommand({ Bucket: 'paused' }));
  const times = Versions.map((v) => v.LastModified?.getTime() ?? Number.NaN).sort((a, b) => a - b);
  const before = times[2] ?? Number.NaN;
  const after = times[3] ?? Number.NaN;
  assert.ok(after - before >= 2, `${before} ${after}`);
  const window = ['--from', new Date(before + 1).toISOString(), '--to', new Date(after - 1).toISOString()];
  const dir = join(work, 'paused');
  const captured = captureIo(uploadedAt);
  const args = [...s3Args(), '--bucket', 'paused', '--out', dir, ...window];
  assert.equal(await runPull(args, captured.io), 0, captured.err());
  assert.match(captured.out[0] ?? '', /^pulled 6 object versions/);
  const verified = captureIo(uploadedAt);
  assert.equal(await runVerify([dir], verified.io), 0);
  assert.equal(verified.out.at(-1), '1 streams, 2 batches, 4 records verified, 0 gaps');
});

test("a second pull reads each saved version's retention again: it may have been extended", async () => {
  const dir = join(work, 'extended');
  await pull(dir);
  const key = streams[0]?.objects[1]?.key;
  const { Versions } = await client.send(new ListObjectVersionsCommand({ Bucket: 'clean', Prefix: key }));
  const versionId = Versions?.[0]?.VersionId;
  assert.ok(versionId);
  const later = new Date(Date.now() + 2 * retentionMs);
  later.setMilliseconds(0);
  await client.send(
    new PutObjectRetentionCommand({
      Bucket: 'clean',
      Key: key,
      VersionId: versionId,
      Retention: { Mode: 'COMPLIANCE', RetainUntilDate: later },
    }),
  );
  assert.match((await pull(dir)).out[0] ?? '', /: 0 downloaded, 14 already present, 0 repaired$/);
  const index = (await readFile(join(dir, 'index.ndjson'), 'utf8'))
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as { versionId: string; retainUntil: string | null });
  assert.equal(index.find((meta) => meta.versionId === versionId)?.retainUntil, later.toISOString());
});

test('the server refuses to delete a locked version, and the evidence stays valid', async () => {
  const key = streams[0]?.objects[1]?.key;
  const { Versions } = await client.send(new ListObjectVersionsCommand({ Bucket: 'clean', Prefix: key }));
  const versionId = Versions?.[0]?.VersionId;
  assert.ok(versionId);
  await assert.rejects(
    client.send(new DeleteObjectCommand({ Bucket: 'clean', Key: key, VersionId: versionId })),
    (error: Error & { $metadata?: { httpStatusCode?: number } }) => {
      assert.equal(error.name, 'AccessDenied');
      assert.equal(error.$metadata?.httpStatusCode, 403);
      return true;
    },
  );
  const verified = captureIo(uploadedAt);
  assert.equal(await runVerify(['s3://clean/v1/', ...s3Args()], verified.io), 0);
  assert.deepEqual(verified.out, [unchecked, notPinned, '2 streams, 5 batches, 18 records verified, 0 gaps']);
});

/** Every file under `dir`, with its size. */
async function filesUnder(dir: string): Promise<{ path: string; size: number }[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  const files = entries.filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name));
  return Promise.all(files.map(async (path) => ({ path, size: (await stat(path)).size })));
}

test('a pull fetches no object outside the evidence layout, and refuses one too large to be evidence', async () => {
  await client.send(new CreateBucketCommand({ Bucket: 'planted', ObjectLockEnabledForBucket: true }));
  const built = buildStream({ ref: streamRef('pod-planted'), batches: [[0, 1, 2]] });
  await upload(client, 'planted', built.objects, {
    retainUntil: new Date(uploadedAt.getTime() + retentionMs),
  });
  // What anyone allowed to write under the prefix could leave there.
  const note = 'a note left under the evidence prefix, not evidence';
  await client.send(new PutObjectCommand({ Bucket: 'planted', Key: 'v1/notes.txt', Body: note }));
  const huge = batchKey(built.prefix, 9);
  await client.send(
    new PutObjectCommand({ Bucket: 'planted', Key: huge, Body: Buffer.alloc(maxBatchObjectBytes + 1) }),
  );
  // Far smaller than any batch, far larger than any manifest: parsed, its brackets exhaust the heap.
  const nested = manifestKey(built.prefix, 9);
  const brackets = Buffer.from(`${'['.repeat(maxManifestBytes)}${']'.repeat(maxManifestBytes)}`);
  await client.send(new PutObjectCommand({ Bucket: 'planted', Key: nested, Body: brackets }));

  const dir = join(work, 'planted');
  const pulled = await pull(dir, '--bucket', 'planted');
  assert.equal(pulled.code, 0);
  assert.match(
    pulled.out[0] ?? '',
    new RegExp(
      `: ${built.objects.length} downloaded, 0 already present, 0 repaired, 1 outside the evidence layout \\(metadata only\\), 2 refused as larger than any manifest \\(${maxManifestBytes} bytes\\) or batch \\(${maxBatchObjectBytes} bytes\\) can be$`,
    ),
  );
  const files = await filesUnder(dir);
  assert.ok(
    files.every(({ size }) => size < 1024 * 1024),
    'the oversized version was not saved',
  );
  for (const { path } of files)
    assert.ok(!(await readFile(path, 'utf8')).includes(note), `${path} holds the note`);

  const verified = captureIo(uploadedAt);
  assert.equal(await runVerify([dir], verified.io), 1);
  assert.ok(
    verified.out.includes('WARN - v1/notes.txt: not an object of the evidence layout'),
    verified.out.join('\n'),
  );
  const refusedBatch = new RegExp(
    `^INVALID ${built.stream} ${huge}: version \\S+ is ${maxBatchObjectBytes + 1} bytes, larger than any batch can be \\(${maxBatchObjectBytes} bytes\\): not fetched$`,
  );
  assert.ok(
    verified.out.some((line) => refusedBatch.test(line)),
    verified.out.join('\n'),
  );
  // One finding for the key, though core misses the manifest's bytes too.
  const refusedManifest = new RegExp(
    `^INVALID ${built.stream} ${nested}: version \\S+ is ${brackets.length} bytes, larger than any manifest can be \\(${maxManifestBytes} bytes\\): not fetched$`,
  );
  const aboutManifest = verified.out.filter(
    (line) => line.includes(` ${nested}: `) && line.endsWith('not fetched'),
  );
  assert.equal(aboutManifest.length, 1, verified.out.join('\n'));
  assert.match(aboutManifest[0] ?? '', refusedManifest);
  assert.equal(verified.out.at(-1), '1 streams, 1 batches, 3 records verified, 0 gaps');
});

test('a version too large to be evidence is refused by its download length when the listing gives no size', async () => {
  await client.send(new CreateBucketCommand({ Bucket: 'sizeless', ObjectLockEnabledForBucket: true }));
  const built = buildStream({ ref: streamRef('pod-sizeless'), batches: [[0, 1]] });
  await upload(client, 'sizeless', built.objects, {
    retainUntil: new Date(uploadedAt.getTime() + retentionMs),
  });
  const planted = manifestKey(built.prefix, 9);
  const body = Buffer.alloc(maxManifestBytes + 1, '[');
  await client.send(new PutObjectCommand({ Bucket: 'sizeless', Key: planted, Body: body }));
  // A store whose listing leaves the sizes out, as some S3-compatible ones do.
  const sizeless = s3.client();
  sizeless.middlewareStack.add(
    (next) => async (args) => {
      const answer = await next(args);
      const output = answer.output as { Versions?: { Size?: number }[] };
      for (const version of output.Versions ?? []) delete version.Size;
      return answer;
    },
    { step: 'initialize', name: 'dropListedSizes' },
  );
  const out = join(work, 'sizeless');
  try {
    const result = await pullEvidence({
      client: sizeless,
      endpoint: s3.endpoint,
      bucket: 'sizeless',
      prefix: 'v1/',
      window: { from: undefined, before: undefined },
      out,
      progress: createProgress({ output: captureIo(uploadedAt).io.err, label: 'pull' }),
    });
    assert.equal(result.refused, 1);
    assert.equal(result.downloaded, built.objects.length);
  } finally {
    sizeless.destroy();
  }
  const index = (await readFile(join(out, 'index.ndjson'), 'utf8')).trim().split('\n');
  const meta = index.map((line) => JSON.parse(line)).find((m) => m.key === planted);
  assert.equal(meta?.file, null);
  assert.equal(meta?.size, body.length);
});

test('a request on one version that fails names the operation, the key and the version', async () => {
  await client.send(new CreateBucketCommand({ Bucket: 'vanishing', ObjectLockEnabledForBucket: true }));
  const built = buildStream({ ref: streamRef('pod-vanishing'), batches: [[0, 1]] });
  await upload(client, 'vanishing', built.objects, {
    retainUntil: new Date(uploadedAt.getTime() + retentionMs),
  });
  // Not locked: deleted between the listing and its download, as a lifecycle rule may do.
  const key = batchKey(built.prefix, 9);
  const { VersionId: versionId } = await client.send(
    new PutObjectCommand({ Bucket: 'vanishing', Key: key, Body: 'gone before it is fetched' }),
  );
  assert.ok(versionId);
  const racing = s3.client();
  racing.middlewareStack.add(
    (next, context) => async (args) => {
      const answer = await next(args);
      if (context.commandName === 'ListObjectVersionsCommand') {
        await client.send(new DeleteObjectCommand({ Bucket: 'vanishing', Key: key, VersionId: versionId }));
      }
      return answer;
    },
    { step: 'initialize', name: 'deleteAfterListing' },
  );
  try {
    await assert.rejects(
      pullEvidence({
        client: racing,
        endpoint: s3.endpoint,
        bucket: 'vanishing',
        prefix: 'v1/',
        window: { from: undefined, before: undefined },
        out: join(work, 'vanishing'),
        progress: createProgress({ output: captureIo(uploadedAt).io.err, label: 'pull' }),
      }),
      (error: Error) => {
        assert.ok(error instanceof CliError, String(error));
        const expected = `GetObject ${key} version ${versionId}: S3 request to ${s3.endpoint} failed: `;
        assert.ok(error.message.startsWith(expected), error.message);
        return true;
      },
    );
  } finally {
    racing.destroy();
  }
});

test('evidence in a bucket without Object Lock is INVALID', async () => {
  await client.send(new CreateBucketCommand({ Bucket: 'unlocked' }));
  const built = buildStream({ batches: [[0, 1, 2]] });
  await upload(client, 'unlocked', built.objects);
  const verified = captureIo(uploadedAt);
  assert.equal(await runVerify(['s3://unlocked', ...s3Args()], verified.io), 1);
  assert.equal(verified.out[0], 'INVALID - -: Object Lock is not enabled on the bucket');
  const notLocked = verified.out.filter((line) =>
    /^INVALID \S+ \S+: version \S+ is not locked; evidence needs COMPLIANCE$/.test(line),
  );
  assert.equal(notLocked.length, built.objects.length);
  assert.equal(verified.out.at(-1), '1 streams, 1 batches, 3 records verified, 0 gaps');

  // Its records are intact, yet the bucket protects none of them: no stream reads as valid.
  const dir = join(work, 'unlocked');
  const pulled = captureIo(uploadedAt);
  assert.equal(await runPull([...s3Args(), '--bucket', 'unlocked', '--out', dir], pulled.io), 0);
  const json = join(work, 'unlocked-report.json');
  assert.equal(await runReport([dir, '--json', json], captureIo(uploadedAt).io), 1);
  const report = JSON.parse(await readFile(json, 'utf8'));
  assert.deepEqual(
    report.streams.map((s: { valid: boolean }) => s.valid),
    [false],
  );
  const shown = captureIo(uploadedAt);
  assert.equal(await runSessionsShow([`${built.stream}:1`, '--dir', dir], shown.io), 0);
  assert.ok(
    shown.out.includes(
      'evidence  its stream has INVALID findings: run veil evidence verify (keys not pinned: pass --trusted-keys)',
    ),
    shown.out.join('\n'),
  );
});

test('a version stored without a SHA-256 is warned of, and a same-size edit of its saved copy is repaired', async () => {
  await client.send(new CreateBucketCommand({ Bucket: 'unchecked', ObjectLockEnabledForBucket: true }));
  const built = buildStream({ ref: streamRef('pod-unchecked'), batches: [[0, 1, 2], [3]] });
  const retainUntil = new Date(uploadedAt.getTime() + retentionMs);
  for (const object of built.objects) {
    await client.send(
      new PutObjectCommand({
        Bucket: 'unchecked',
        Key: object.key,
        Body: object.bytes,
        ObjectLockMode: 'COMPLIANCE',
        ObjectLockRetainUntilDate: retainUntil,
      }),
    );
  }
  const dir = join(work, 'unchecked');
  const pulled = await pull(dir, '--bucket', 'unchecked');
  assert.match(pulled.out[0] ?? '', /: 6 downloaded, 0 already present, 0 repaired$/);
  const verified = captureIo(uploadedAt);
  assert.equal(await runVerify([dir, '--min-retention-days', '0'], verified.io), 0);
  const missing = verified.out.filter((line) =>
    /^WARN \S+ \S+: version \S+ was stored without a full-object SHA-256 checksum$/.test(line),
  );
  assert.equal(missing.length, built.objects.length, verified.out.join('\n'));

  // Bytes and metadata edited together, the size kept: S3 holds no SHA-256 to tell them apart.
  const batches = join(dir, 'objects', ...built.prefix.split('/'), 'batches');
  const [first] = (await readdir(batches)).filter((f) => !f.endsWith('.meta.json')).sort();
  assert.ok(first);
  const original = await readFile(join(batches, first));
  const edited = Buffer.from(original);
  edited[20] = (edited[20] ?? 0) ^ 0x01;
  const metaPath = join(batches, `${first}.meta.json`);
  const meta = JSON.parse(await readFile(metaPath, 'utf8'));
  await writeFile(join(batches, first), edited);
  await writeFile(
    metaPath,
    JSON.stringify({ ...meta, sha256: createHash('sha256').update(edited).digest('hex') }),
  );

  assert.match(
    (await pull(dir, '--bucket', 'unchecked')).out[0] ?? '',
    /: 0 downloaded, 5 already present, 1 repaired$/,
  );
  assert.deepEqual(await readFile(join(batches, first)), original);
});

test('a pull into a folder that holds something other than a pull is refused, and the folder left as it was', async () => {
  const dir = join(work, 'not-a-pull');
  await mkdir(dir);
  await writeFile(join(dir, 'index.ndjson'), 'notes of my own\n');
  const { io } = captureIo(uploadedAt);
  await assert.rejects(
    runPull([...s3Args(), '--bucket', 'clean', '--out', dir], io),
    (error: Error) =>
      error instanceof CliError &&
      error.message ===
        `${dir} is not empty and holds no earlier pull (no bucket.json): pull into an empty directory`,
  );
  assert.deepEqual(await readdir(dir), ['index.ndjson']);
  assert.equal(await readFile(join(dir, 'index.ndjson'), 'utf8'), 'notes of my own\n');
});

test('a missing bucket, an --out that cannot be created and an unreachable endpoint are named clearly', async () => {
  const { io } = captureIo(uploadedAt);
  await assert.rejects(
    runPull([...s3Args(), '--bucket', 'absent', '--out', join(work, 'absent')], io),
    (error: Error) =>
      error instanceof CliError && error.message === `bucket "absent" does not exist at ${s3.endpoint}`,
  );
  const blocker = join(work, 'a-file');
  await writeFile(blocker, 'not a folder');
  await assert.rejects(
    runPull([...s3Args(), '--bucket', 'clean', '--out', join(blocker, 'out')], io),
    (error: Error) =>
      error instanceof CliError &&
      error.message === `cannot create ${join(blocker, 'out')}: not a directory (ENOTDIR)`,
  );
  // A regular file where a pull must write a folder: named, and exit code 2, not a raw error.
  const blocked = join(work, 'blocked');
  assert.equal((await pull(blocked)).code, 0);
  await rm(join(blocked, 'objects'), { recursive: true });
  await writeFile(join(blocked, 'objects'), 'not a folder');
  await assert.rejects(runPull([...s3Args(), '--bucket', 'clean', '--out', blocked], io), (error: Error) => {
    assert.ok(error instanceof CliError, String(error));
    assert.equal(error.exitCode, 2);
    assert.match(error.message, /^cannot write .*\/blocked\/objects\/v1\/.*: not a directory \(ENOTDIR\)$/);
    return true;
  });
  const closed = `http://127.0.0.1:${await freePort()}`;
  await assert.rejects(
    runVerify(['s3://clean', '--endpoint', closed, '--path-style'], io),
    (error: Error) => error instanceof CliError && error.message === `cannot reach ${closed} (ECONNREFUSED)`,
  );
});

/** The `veil` binary itself, as an auditor runs it. */
function veil(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliMain, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

test('the veil binary verifies a bucket directly, and names refused credentials', async () => {
  const ok = await veil(['evidence', 'verify', 's3://clean', ...s3Args()], process.env);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(ok.stdout, `${unchecked}\n${notPinned}\n2 streams, 5 batches, 18 records verified, 0 gaps\n`);
  assert.match(ok.stderr, /pull: 14\/14 objects/);

  const wrong = { ...process.env, AWS_ACCESS_KEY_ID: 'not-a-user', AWS_SECRET_ACCESS_KEY: 'not-a-secret' };
  const refused = await veil(['evidence', 'verify', 's3://clean', ...s3Args()], wrong);
  assert.equal(refused.code, 2);
  assert.equal(refused.stdout, '');
  assert.match(refused.stderr, new RegExp(`^veil: ${s3.endpoint} refused the credentials \\(\\w+\\)`));
  assert.ok(!refused.stderr.includes('not-a-secret'));
});
