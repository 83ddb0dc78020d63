// The tamper corpus, through a real S3 server with versioning and Object Lock.
// Each case tampers the way someone with write access to the bucket (or to the
// sidecar before upload) could, then runs `veil evidence verify s3://…` and
// expects the finding that names it. Under Object Lock an upload can never
// change a version, only add one: rewrites after upload show as extra
// versions and delete markers, while the content checks catch what was forged
// before the evidence reached the bucket.
import assert from 'node:assert/strict';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  CopyObjectCommand,
  CreateBucketCommand,
  DeleteObjectCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import {
  batchKey,
  encodeBatch,
  generateSigningKey,
  manifestKey,
  sha256Base64,
  storeManifest,
} from '@veil/core';
import { runVerify } from '../../../packages/cli/src/commands/evidence.ts';
import {
  type BuiltStream,
  buildStream,
  captureIo,
  type EvidenceObject,
  upload,
} from '../../../packages/cli/test/support/evidence.ts';
import { type S3Server, startS3 } from '../../harness/index.ts';

const clean = [
  [0, 1, 2],
  [3, 4],
  [5, 6, 7, 8],
];
const retentionMs = 120_000;

let s3: S3Server;
let client: S3Client;
let buckets = 0;
let dir: string;
const savedEnv = { ...process.env };

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'veil-tamper-'));
  s3 = await startS3();
  client = s3.client();
  process.env.AWS_ACCESS_KEY_ID = s3.credentials.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = s3.credentials.secretAccessKey;
  process.env.AWS_REGION = s3.region;
  delete process.env.AWS_PROFILE;
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
  client?.destroy();
  await s3?.destroy();
  for (const name of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_REGION', 'AWS_PROFILE']) {
    if (savedEnv[name] === undefined) delete process.env[name];
    else process.env[name] = savedEnv[name];
  }
});

type Published = { bucket: string; built: BuiltStream; now: Date };

/** A fresh Object Lock bucket holding `objects` (the stream's own by default), uploaded as the shipper does. */
async function publish(
  built: BuiltStream,
  objects: readonly EvidenceObject[] = built.objects,
): Promise<Published> {
  buckets += 1;
  const bucket = `tamper-${buckets}`;
  await client.send(new CreateBucketCommand({ Bucket: bucket, ObjectLockEnabledForBucket: true }));
  const now = new Date();
  await upload(client, bucket, objects, { retainUntil: new Date(now.getTime() + retentionMs) });
  return { bucket, built, now };
}

/** As an admin would write: a plain PUT, no If-None-Match, so the key gains a new version. */
async function putVersion(bucket: string, key: string, bytes: Uint8Array, lock?: Date): Promise<void> {
  await client.send(
    new PutObjectCommand({
      Bucket: bucket,
      Key: key,
      Body: bytes,
      ChecksumSHA256: sha256Base64(bytes),
      ...(lock ? { ObjectLockMode: 'COMPLIANCE', ObjectLockRetainUntilDate: lock } : {}),
    }),
  );
}

type Verified = { code: number; lines: string[]; codes: string[]; records: number };

/**
 * `veil evidence verify s3://BUCKET`, as text and as JSON; `now` is when the
 * evidence was uploaded. The auditor pins the stream's key to its stream, as
 * one who collected it from the pod would.
 */
async function verify({ bucket, now, built }: Published): Promise<Verified> {
  const trusted = join(dir, `${bucket}.keys`);
  await writeFile(trusted, `${built.key.keyId} ${built.stream}\n`);
  // The locks here last seconds: any length passes, yet it is checked, so no finding says it was not.
  const args = [
    `s3://${bucket}/v1/`,
    '--endpoint',
    s3.endpoint,
    '--path-style',
    '--trusted-keys',
    trusted,
    '--min-retention-days',
    '0',
  ];
  const text = captureIo(now);
  const code = await runVerify(args, text.io);
  const json = captureIo(now);
  assert.equal(await runVerify([...args, '--json'], json.io), code);
  const parsed = JSON.parse(json.out.join('\n'));
  const codes = [
    ...new Set<string>(parsed.findings.map((f: { level: string; code: string }) => `${f.level} ${f.code}`)),
  ];
  return { code, lines: text.out, codes: codes.sort(), records: parsed.totals.records };
}

function assertLine(result: Verified, line: string | RegExp): void {
  const found =
    typeof line === 'string' ? result.lines.includes(line) : result.lines.some((l) => line.test(l));
  assert.ok(found, `expected ${line} in:\n${result.lines.join('\n')}`);
}

function flip(bytes: Uint8Array, at: number): Uint8Array {
  const copy = Uint8Array.from(bytes);
  copy[at] = (copy[at] ?? 0) ^ 0x01;
  return copy;
}

function batchBytes(built: BuiltStream, seq: number): Uint8Array {
  const batch = built.batches.get(seq);
  assert.ok(batch, `batch ${seq}`);
  return batch.bytes;
}

test('untampered evidence verifies clean', async () => {
  const result = await verify(await publish(buildStream({ batches: clean })));
  assert.equal(result.code, 0);
  assert.deepEqual(result.lines, ['1 streams, 3 batches, 9 records verified, 0 gaps']);
});

test('a byte flipped in a batch and written back is a second version', async () => {
  const published = await publish(buildStream({ batches: clean }));
  const { built, bucket } = published;
  const key = batchKey(built.prefix, 2);
  await putVersion(bucket, key, flip(batchBytes(built, 2), 20));
  const result = await verify(published);
  assert.equal(result.code, 1);
  assertLine(result, `INVALID ${built.stream} ${key}: 2 versions: the object was written again`);
  assertLine(
    result,
    new RegExp(`^INVALID ${built.stream} ${key}: version \\S+ is not locked; evidence needs COMPLIANCE$`),
  );
  assert.deepEqual(result.codes, ['INVALID object-not-locked', 'INVALID replaced-object']);
  assert.equal(result.records, 9, 'the original version is what gets verified');
});

test('a byte flipped on the storage under the server breaks the stored checksum', async () => {
  const published = await publish(buildStream({ batches: clean }));
  const { built, bucket } = published;
  const key = batchKey(built.prefix, 2);
  // The object store's own files: tampering beneath S3, where no lock reaches.
  const file = await open(join(s3.dataDir, bucket, ...key.split('/')), 'r+');
  try {
    const byte = Buffer.alloc(1);
    await file.read(byte, 0, 1, 20);
    byte[0] = (byte[0] ?? 0) ^ 0x01;
    await file.write(byte, 0, 1, 20);
  } finally {
    await file.close();
  }
  const result = await verify(published);
  assert.equal(result.code, 1);
  assertLine(
    result,
    new RegExp(`^INVALID ${built.stream} ${key}: version \\S+ does not match its stored SHA-256$`),
  );
  assertLine(result, `INVALID ${built.stream} ${key}: SHA-256 differs from ${manifestKey(built.prefix, 2)}`);
  assert.deepEqual(result.codes, ['INVALID batch-checksum-mismatch', 'INVALID checksum-mismatch']);
});

test('a batch replaced by a new, locked version is flagged; the original is verified', async () => {
  const published = await publish(buildStream({ batches: clean }));
  const { built, bucket, now } = published;
  const key = batchKey(built.prefix, 2);
  // Hide the denial at seq 3: the same records, re-encoded with its outcome changed.
  const lines = (built.lines.get(2) ?? []).map((line) =>
    line.replace('"outcome":"denied"', '"outcome":"allowed"'),
  );
  assert.notDeepEqual(lines, built.lines.get(2));
  await putVersion(bucket, key, encodeBatch(lines).bytes, new Date(now.getTime() + retentionMs));
  const result = await verify(published);
  assert.equal(result.code, 1);
  assertLine(result, `INVALID ${built.stream} ${key}: 2 versions: the object was written again`);
  assert.deepEqual(result.codes, ['INVALID replaced-object']);
});

test('a manifest hidden behind a delete marker is flagged', async () => {
  const published = await publish(buildStream({ batches: clean }));
  const { built, bucket } = published;
  const key = manifestKey(built.prefix, 2);
  // A delete without a version id is allowed under Object Lock: it only hides the object.
  await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
  const result = await verify(published);
  assert.equal(result.code, 1);
  assertLine(result, `INVALID ${built.stream} ${key}: hidden by 1 delete marker(s)`);
  assert.deepEqual(result.codes, ['INVALID hidden-object']);
  assert.equal(result.records, 9, 'the hidden version is still pulled and verified');
});

test('a manifest copied to another key fails its key binding', async () => {
  const published = await publish(buildStream({ batches: clean }));
  const { built, bucket } = published;
  const source = manifestKey(built.prefix, 1);
  const target = manifestKey(built.prefix, 9);
  await client.send(
    new CopyObjectCommand({ Bucket: bucket, Key: target, CopySource: `${bucket}/${source}` }),
  );
  const result = await verify(published);
  assert.equal(result.code, 1);
  assertLine(result, `INVALID ${built.stream} ${target}: the manifest was written for ${source}`);
  assert.deepEqual(result.codes, ['INVALID key-mismatch', 'INVALID object-not-locked']);
});

test('two batches swapped as new versions are both flagged', async () => {
  const published = await publish(buildStream({ batches: clean }));
  const { built, bucket } = published;
  const first = batchKey(built.prefix, 1);
  const second = batchKey(built.prefix, 2);
  await putVersion(bucket, first, batchBytes(built, 2));
  await putVersion(bucket, second, batchBytes(built, 1));
  const result = await verify(published);
  assert.equal(result.code, 1);
  assertLine(result, `INVALID ${built.stream} ${first}: 2 versions: the object was written again`);
  assertLine(result, `INVALID ${built.stream} ${second}: 2 versions: the object was written again`);
  assert.deepEqual(result.codes, ['INVALID object-not-locked', 'INVALID replaced-object']);
});

test('a stream with no closing manifest is a warning, exit 0', async () => {
  const published = await publish(buildStream({ batches: clean, close: false }));
  const { built } = published;
  const result = await verify(published);
  assert.equal(result.code, 0);
  assert.deepEqual(result.lines, [
    `WARN ${built.stream} ${built.prefix}: no closing manifest: the sidecar stopped before writing one (a crash, a lost node, or the store unreachable at shutdown), or it still runs`,
    '1 streams, 3 batches, 9 records verified, 0 gaps',
  ]);
  assert.deepEqual(result.codes, ['WARN unclosed-stream']);
});

test('a batch that no manifest describes is an orphan', async () => {
  const built = buildStream({ batches: clean });
  const key = batchKey(built.prefix, 9);
  const published = await publish(built, [...built.objects, { key, bytes: batchBytes(built, 1) }]);
  const result = await verify(published);
  assert.equal(result.code, 1);
  assertLine(result, `INVALID ${built.stream} ${key}: a batch no manifest describes`);
  assert.deepEqual(result.codes, ['INVALID orphan-object']);
});

test('a record removed with the Merkle root recomputed but not re-signed fails the signature', async () => {
  const built = buildStream({ batches: clean });
  // Forged before upload (in the spool, say): after upload it would show as a second version.
  const shorter = encodeBatch((built.lines.get(3) ?? []).slice(0, -1));
  const original = built.manifests[3]?.manifest;
  assert.ok(original?.kind === 'batch');
  const forged = storeManifest({ ...original, batch: { ...original.batch, ...shorter.content } });
  const replacements = new Map([
    [original.batch.key, shorter.bytes],
    [original.key, forged.bytes],
  ]);
  const objects = built.objects.map((object) => ({
    key: object.key,
    bytes: replacements.get(object.key) ?? object.bytes,
  }));
  const published = await publish(built, objects);
  const result = await verify(published);
  assert.equal(result.code, 1);
  assertLine(result, `INVALID ${built.stream} ${original.key}: the signature does not verify`);
  assert.deepEqual(result.codes, [
    'INVALID chain-break',
    'INVALID close-mismatch',
    'INVALID signature-invalid',
  ]);
});

test('a gap in the record sequence names the missing records', async () => {
  const published = await publish(
    buildStream({
      batches: [
        [0, 1, 2],
        [5, 6],
      ],
    }),
  );
  const { built } = published;
  const result = await verify(published);
  assert.equal(result.code, 1);
  assertLine(
    result,
    `INVALID ${built.stream} ${batchKey(built.prefix, 2)}: records 3..4 are missing before this batch`,
  );
  assert.equal(result.lines.at(-1), '1 streams, 2 batches, 5 records verified, 1 gaps');
  assert.deepEqual(result.codes, ['INVALID seq-gap']);
});

test('a manifest signed by a key other than the stream key is refused', async () => {
  const intruder = generateSigningKey();
  const published = await publish(
    buildStream({ batches: clean, signer: (seq, own) => (seq === 2 ? intruder : own) }),
  );
  const { built } = published;
  const result = await verify(published);
  assert.equal(result.code, 1);
  assertLine(
    result,
    `INVALID ${built.stream} ${manifestKey(built.prefix, 2)}: signed by ${intruder.keyId}, not the stream key`,
  );
  assert.deepEqual(result.codes, ['INVALID unknown-key']);
});
