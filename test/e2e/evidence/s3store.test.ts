// The S3 evidence store against a real S3 server: every PUT locked in
// COMPLIANCE with a checked SHA-256, written once; a retry of the same bytes
// counts as stored, other bytes are a conflict.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { HeadObjectCommand, ListObjectVersionsCommand, type S3Client } from '@aws-sdk/client-s3';
import { sha256Hex } from '@veil/core';
import { S3EvidenceStore } from '../../../packages/sidecar/src/audit/s3store.ts';
import { EvidenceConflictError } from '../../../packages/sidecar/src/audit/store.ts';
import { type S3Server, startS3 } from '../../harness/index.ts';
import { createLockedBucket } from './bucket.ts';

const bucket = 'veil-store';
let s3: S3Server;
let client: S3Client;
let store: S3EvidenceStore;
const savedEnv = { ...process.env };

before(async () => {
  s3 = await startS3();
  client = s3.client();
  await createLockedBucket(client, bucket);
  // Credentials come from the SDK's default chain, as in a pod.
  process.env.AWS_ACCESS_KEY_ID = s3.credentials.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = s3.credentials.secretAccessKey;
  store = new S3EvidenceStore({
    bucket,
    prefix: 'tenant-a',
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: true,
  });
});
after(async () => {
  store?.close();
  client?.destroy();
  await s3?.destroy();
  process.env = savedEnv;
});

const evidence = (key: string, text: string, retainUntil = new Date(Date.now() + 30_000)) => ({
  key,
  bytes: Buffer.from(text),
  sha256: sha256Hex(text),
  retainUntil,
});

async function versions(key: string): Promise<number> {
  const listed = await client.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: key }));
  return (listed.Versions ?? []).filter((v) => v.Key === key).length;
}

test('a put is locked in COMPLIANCE until the given date, with its SHA-256 stored, under the prefix', async () => {
  const retainUntil = new Date(Date.now() + 30_000);
  await store.put(evidence('v1/c/ns/uid/inc/manifests/00000000000000000000.json', '{"a":1}', retainUntil));
  const head = await client.send(
    new HeadObjectCommand({
      Bucket: bucket,
      Key: 'tenant-a/v1/c/ns/uid/inc/manifests/00000000000000000000.json',
      ChecksumMode: 'ENABLED',
    }),
  );
  assert.equal(head.ObjectLockMode, 'COMPLIANCE');
  assert.equal(
    Math.floor((head.ObjectLockRetainUntilDate?.getTime() ?? 0) / 1000),
    Math.floor(retainUntil.getTime() / 1000),
  );
  assert.equal(head.ChecksumSHA256, Buffer.from(sha256Hex('{"a":1}'), 'hex').toString('base64'));
});

test('the same bytes again count as stored and make no second version', async () => {
  const key = 'v1/c/ns/uid/inc/batches/00000000000000000001.ndjson.gz';
  await store.put(evidence(key, 'batch one'));
  await store.put(evidence(key, 'batch one'));
  assert.equal(await versions(`tenant-a/${key}`), 1);
});

test('other bytes at a stored key are a conflict and change nothing', async () => {
  const key = 'v1/c/ns/uid/inc/batches/00000000000000000002.ndjson.gz';
  await store.put(evidence(key, 'the original'));
  await assert.rejects(store.put(evidence(key, 'a forgery')), EvidenceConflictError);
  assert.equal(await versions(`tenant-a/${key}`), 1);
});

test('the server checks the SHA-256: bytes that do not match it are refused', async () => {
  const key = 'v1/c/ns/uid/inc/batches/00000000000000000003.ndjson.gz';
  const damaged = { ...evidence(key, 'sent'), sha256: sha256Hex('meant') };
  await assert.rejects(store.put(damaged), (error: Error) => !(error instanceof EvidenceConflictError));
  assert.equal(await versions(`tenant-a/${key}`), 0);
});
