// The S3 evidence store and the shipper against a real S3 server, where it
// goes wrong: a bucket without Object Lock (whose server stores the object even
// as it refuses the lock), locks that are not the one asked for, a server that
// keeps no checksum, set-ups only an operator can fix, a retention raised
// between attempts, and a host clock far behind the store's.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, type TestContext, test } from 'node:test';
import {
  CreateBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type PutObjectCommandInput,
  S3Client,
} from '@aws-sdk/client-s3';
import { sha256Hex } from '@veil/core';
import { type S3Server, startS3 } from '../../../../test/harness/index.ts';
import { AuditRecorder, type AuditRecorderOptions } from '../../src/audit/recorder.ts';
import { S3EvidenceStore } from '../../src/audit/s3store.ts';
import type { BatchSettings } from '../../src/audit/shipper.ts';
import {
  EvidenceConflictError,
  EvidenceNotLockedError,
  type EvidenceStore,
  EvidenceStoreSetupError,
  type StoreSetupProblem,
} from '../../src/audit/store.ts';
import { type Defer, draft, eventually, ScriptedStore, teardown, tempDir } from './helpers.ts';

const locked = 'veil-locked';
const unlocked = 'veil-unlocked';
const savedEnv = { ...process.env };
let s3: S3Server;
let client: S3Client;

before(async () => {
  s3 = await startS3();
  client = s3.client();
  await client.send(new CreateBucketCommand({ Bucket: locked, ObjectLockEnabledForBucket: true }));
  await client.send(new CreateBucketCommand({ Bucket: unlocked }));
  // Credentials come from the SDK's default chain, as in a pod.
  process.env.AWS_ACCESS_KEY_ID = s3.credentials.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = s3.credentials.secretAccessKey;
});
after(async () => {
  client?.destroy();
  await s3?.destroy();
  process.env = savedEnv;
});

function storeFor(defer: Defer, bucket: string, log?: (message: string) => void): S3EvidenceStore {
  const store = new S3EvidenceStore({
    bucket,
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: true,
    log,
  });
  defer(() => store.close());
  return store;
}

const inMinutes = (minutes: number) => new Date(Date.now() + minutes * 60_000);

const evidence = (key: string, text: string, retainUntil = inMinutes(1)) => ({
  key,
  bytes: Buffer.from(text),
  sha256: sha256Hex(text),
  retainUntil,
});

const base64Sha256 = (text: string) => Buffer.from(sha256Hex(text), 'hex').toString('base64');

/** Stores an object as another writer would, with the same bytes as `evidence(key, text)`. */
async function storeDirectly(
  key: string,
  text: string,
  extra: Partial<PutObjectCommandInput>,
): Promise<void> {
  await client.send(new PutObjectCommand({ Bucket: locked, Key: key, Body: text, ...extra }));
}

function setupError(problem: StoreSetupProblem, code: string) {
  return (error: unknown) =>
    error instanceof EvidenceStoreSetupError &&
    error.problem === problem &&
    error.code === code &&
    error.message.includes(code);
}

test('a bucket without Object Lock: the refusal is a set-up error, and the unlocked copy it leaves is not stored evidence', async (t) => {
  const store = storeFor(teardown(t), unlocked);
  const object = evidence('v1/c/ns/uid/inc/manifests/00000000000000000000.json', '{"genesis":1}');
  await assert.rejects(store.put(object), setupError('no-object-lock', 'InvalidRequest'));
  // The server kept the object all the same: the same bytes, with their checksum, unlocked.
  const head = await client.send(
    new HeadObjectCommand({ Bucket: unlocked, Key: object.key, ChecksumMode: 'ENABLED' }),
  );
  assert.equal(head.ChecksumSHA256, base64Sha256('{"genesis":1}'));
  assert.equal(head.ObjectLockMode, undefined);

  await assert.rejects(store.put(object), (error: Error) => {
    assert.ok(error instanceof EvidenceNotLockedError, String(error));
    assert.match(error.message, /manifests\/00000000000000000000\.json holds these bytes but shows no lock/);
    return true;
  });
});

/** How long the stored object is locked for, counted from its writing as an auditor counts it. */
async function heldMs(bucket: string, key: string): Promise<number> {
  const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
  assert.equal(head.ObjectLockMode, 'COMPLIANCE', key);
  return (head.ObjectLockRetainUntilDate?.getTime() ?? 0) - (head.LastModified?.getTime() ?? 0);
}

test('a copy locked in GOVERNANCE mode is not stored evidence; one locked in COMPLIANCE too briefly is extended; a later ask within the margin is stored', async (t) => {
  const store = storeFor(teardown(t), locked);
  const lock = (mode: 'GOVERNANCE' | 'COMPLIANCE', until: Date, text: string) => ({
    ObjectLockMode: mode,
    ObjectLockRetainUntilDate: until,
    ChecksumSHA256: base64Sha256(text),
  });
  await storeDirectly('v1/governed', 'g', lock('GOVERNANCE', inMinutes(60), 'g'));
  await assert.rejects(
    store.put(evidence('v1/governed', 'g', inMinutes(60))),
    /in GOVERNANCE mode, not COMPLIANCE/,
  );

  // COMPLIANCE forbids shortening a lock, not extending it.
  await storeDirectly('v1/brief', 'b', lock('COMPLIANCE', inMinutes(1), 'b'));
  await store.put(evidence('v1/brief', 'b', inMinutes(60 * 24)));
  assert.ok((await heldMs(locked, 'v1/brief')) > 23 * 60 * 60_000, 'the lock holds the day asked');

  // A retry asks for a later date than the attempt that stored the object locked.
  await storeDirectly('v1/retried', 'r', lock('COMPLIANCE', inMinutes(1), 'r'));
  await store.put(evidence('v1/retried', 'r', inMinutes(6)));
});

test('with no stored SHA-256 the bytes read back decide: the same count as stored, others are a conflict saying so', async (t) => {
  const defer = teardown(t);
  const store = storeFor(defer, locked);
  // Without the SDK's default checksum: the server then keeps none, as some S3-compatible stores never do.
  const bare = new S3Client({
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: true,
    credentials: s3.credentials,
    requestChecksumCalculation: 'WHEN_REQUIRED',
  });
  defer(() => bare.destroy());
  const lock = { ObjectLockMode: 'COMPLIANCE' as const, ObjectLockRetainUntilDate: inMinutes(1) };
  for (const key of ['v1/bare-same', 'v1/bare-other', 'v1/bare-longer']) {
    await bare.send(new PutObjectCommand({ Bucket: locked, Key: key, Body: 'stored bytes', ...lock }));
  }
  const head = await client.send(
    new HeadObjectCommand({ Bucket: locked, Key: 'v1/bare-same', ChecksumMode: 'ENABLED' }),
  );
  assert.equal(head.ChecksumSHA256, undefined, 'the server kept no SHA-256');

  await store.put(evidence('v1/bare-same', 'stored bytes'));
  await assert.rejects(
    store.put(evidence('v1/bare-other', 'forged bytes')),
    (error: Error) =>
      error instanceof EvidenceConflictError &&
      /v1\/bare-other already holds other bytes \(no stored SHA-256; its bytes read back hash differently\)/.test(
        error.message,
      ),
  );
  await assert.rejects(
    store.put(evidence('v1/bare-longer', 'stored')),
    /already holds other bytes \(no stored SHA-256; 12 bytes, not 6\)/,
  );
});

test('a missing bucket and refused credentials are set-up errors naming their kind', async (t) => {
  const defer = teardown(t);
  await assert.rejects(
    storeFor(defer, 'veil-absent').put(evidence('v1/x', 'x')),
    setupError('no-bucket', 'NoSuchBucket'),
  );
  process.env.AWS_SECRET_ACCESS_KEY = 'not-the-secret';
  try {
    await assert.rejects(
      storeFor(defer, locked).put(evidence('v1/y', 'y')),
      setupError('credentials', 'SignatureDoesNotMatch'),
    );
  } finally {
    process.env.AWS_SECRET_ACCESS_KEY = s3.credentials.secretAccessKey;
  }
});

const pod = { namespace: 'ml', name: 'embed-0', uid: 'pod-uid-1' };
const fiveRecords: BatchSettings = { maxRecords: 5, maxBytes: 8 * 1024 * 1024, maxAgeSeconds: 3600 };

async function openRecorder(
  t: TestContext,
  bucket: string,
  log: string[],
  options: { wrap?: (store: EvidenceStore) => EvidenceStore } & Partial<AuditRecorderOptions> = {},
): Promise<AuditRecorder> {
  const defer = teardown(t);
  const { wrap = (store) => store, ...overrides } = options;
  const push = (message: string) => log.push(message);
  const recorder = await AuditRecorder.open({
    spoolDir: join(await tempDir(defer), 'spool'),
    identity: { cluster: 'test', pod, incarnation: `inc-${bucket}` },
    store: wrap(storeFor(defer, bucket, push)),
    settings: () => ({ batch: fiveRecords, retentionMs: 1000 }),
    closeGraceMs: 200,
    backoff: { baseMs: 5, capMs: 20 },
    log: push,
    ...overrides,
  });
  defer(() => recorder.close());
  return recorder;
}

async function appendMany(recorder: AuditRecorder, prefix: string, count: number): Promise<void> {
  await Promise.all(Array.from({ length: count }, (_, i) => recorder.append(draft(`${prefix}-${i}`))));
}

test('shipping into a bucket without Object Lock releases nothing, and logs each error as it changes', async (t) => {
  const logged: string[] = [];
  const recorder = await openRecorder(t, unlocked, logged);
  await appendMany(recorder, 'kept', 5);
  await eventually('the unlocked copy found', () => recorder.stats().notLocked);
  assert.match(
    logged[0] ?? '',
    /failed \(1 failure in a row\): EvidenceStoreSetupError: .*InvalidRequest \(HTTP 400\).*; a configuration error \(no-object-lock\): enable Object Lock on the bucket/,
  );
  // The error changed at the second attempt, so that attempt is logged, not the 20th.
  assert.match(
    logged[1] ?? '',
    /failed \(2 failures in a row\): EvidenceNotLockedError: .*manifests\/00000000000000000000\.json holds these bytes but shows no lock/,
  );
  const stats = recorder.stats();
  assert.equal(stats.shippedRecords, 0);
  assert.equal(stats.recordsWaiting, 5);
  assert.equal(stats.conflict, false);
});

test('a missing bucket is a set-up error, retried until the bucket exists, then shipping resumes by itself', async (t) => {
  const bucket = 'veil-later';
  const logged: string[] = [];
  const recorder = await openRecorder(t, bucket, logged);
  await eventually('the missing bucket told', () => recorder.stats().misconfigured === 'no-bucket');
  assert.match(logged[0] ?? '', /NoSuchBucket.*a configuration error \(no-bucket\): check the bucket name/);
  await appendMany(recorder, 'waiting', 5);

  await client.send(new CreateBucketCommand({ Bucket: bucket, ObjectLockEnabledForBucket: true }));
  await eventually('everything shipped', () => recorder.stats().recordsWaiting === 0);
  const stats = recorder.stats();
  assert.equal(stats.misconfigured, undefined);
  assert.equal(stats.failures, 0);
  assert.match(logged.at(-1) ?? '', /^audit shipping resumed after \d+ failures in a row$/);
});

const hourMs = 60 * 60_000;

test('a retention raised while an upload the store kept awaits its retry: the COMPLIANCE lock is extended and shipping goes on', async (t) => {
  let retentionMs = hourMs;
  let stored: string | undefined;
  let scripted: ScriptedStore | undefined;
  const wrap = (store: EvidenceStore) => {
    scripted = new ScriptedStore(store);
    // The first upload reaches the store, but its answer is lost; the policy's retention is raised meanwhile.
    scripted.losing = (key) => {
      if (stored) return false;
      stored = key;
      retentionMs = 3 * hourMs;
      return true;
    };
    return scripted;
  };
  const recorder = await openRecorder(t, locked, [], {
    identity: { cluster: 'test', pod, incarnation: 'inc-raised' },
    wrap,
    settings: () => ({ batch: fiveRecords, retentionMs }),
  });
  await appendMany(recorder, 'raised', 5);
  await eventually('everything shipped', () => recorder.stats().recordsWaiting === 0);
  assert.equal(recorder.stats().notLocked, false);
  assert.equal(scripted?.failures, 1);
  assert.ok(stored);
  assert.ok((await heldMs(locked, stored)) >= 3 * hourMs, 'the lock holds the raised retention');
});

/** Makes this process's clock run `skewMs` behind (negative: ahead) until the test ends. */
function skewClock(t: TestContext, skewMs: number): void {
  const realNow = Date.now;
  Date.now = () => realNow() - skewMs;
  t.after(() => {
    Date.now = realNow;
  });
}

test("a host clock far behind the store's: locks are counted on the store's clock, and the skew is told once", async (t) => {
  const skewMs = 30 * 60_000;
  const logged: string[] = [];
  skewClock(t, skewMs);
  const recorder = await openRecorder(t, locked, logged, {
    identity: { cluster: 'test', pod, incarnation: 'inc-skewed' },
    settings: () => ({ batch: fiveRecords, retentionMs: hourMs }),
    closeGraceMs: 20_000,
  });
  await appendMany(recorder, 'skewed', 10);
  await eventually('everything shipped', () => recorder.stats().recordsWaiting === 0);
  await recorder.close();

  const listed = await client.send(
    new ListObjectsV2Command({ Bucket: locked, Prefix: 'v1/test/ml/pod-uid-1/inc-skewed/' }),
  );
  const keys = (listed.Contents ?? []).map((object) => object.Key ?? '');
  // The genesis, two batches with their manifests, and the close.
  assert.equal(keys.length, 6);
  for (const key of keys) assert.ok((await heldMs(locked, key)) >= hourMs, `${key} holds the retention`);
  const told = logged.filter((line) => line.includes('clock is'));
  assert.equal(told.length, 1, told.join('\n'));
  // The store's Date header counts whole seconds: the skew learned is within a few of the one made.
  const learned = /^audit: this host's clock is (\d+) s behind the clock of s3:\/\/veil-locked\//.exec(
    told[0] ?? '',
  );
  assert.ok(learned, told[0]);
  assert.ok(Math.abs(Number(learned[1]) - skewMs / 1000) <= 5, told[0]);
});
