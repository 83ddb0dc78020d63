import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, test } from 'node:test';
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectLockConfigurationCommand,
  HeadObjectCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { type S3Server, startS3 } from '../../harness/index.ts';

let s3: S3Server;
let client: S3Client;

before(async () => {
  s3 = await startS3();
  client = s3.client();
});
after(async () => {
  client?.destroy();
  await s3?.destroy();
});

test('a bucket created with Object Lock reports it enabled', async () => {
  await client.send(new CreateBucketCommand({ Bucket: 'smoke-locked', ObjectLockEnabledForBucket: true }));
  const config = await client.send(new GetObjectLockConfigurationCommand({ Bucket: 'smoke-locked' }));
  assert.equal(config.ObjectLockConfiguration?.ObjectLockEnabled, 'Enabled');
});

test('a COMPLIANCE-locked version cannot be deleted and HEAD shows its lock', async () => {
  const body = Buffer.from('evidence');
  const retainUntil = new Date(Date.now() + 5_000);
  const put = await client.send(
    new PutObjectCommand({
      Bucket: 'smoke-locked',
      Key: 'v1/smoke/object.txt',
      Body: body,
      ObjectLockMode: 'COMPLIANCE',
      ObjectLockRetainUntilDate: retainUntil,
      ChecksumSHA256: createHash('sha256').update(body).digest('base64'),
    }),
  );
  assert.ok(put.VersionId, 'a versioned bucket returns a version id');

  await assert.rejects(
    client.send(
      new DeleteObjectCommand({
        Bucket: 'smoke-locked',
        Key: 'v1/smoke/object.txt',
        VersionId: put.VersionId,
      }),
    ),
    (error: Error & { $metadata?: { httpStatusCode?: number } }) => error.$metadata?.httpStatusCode === 403,
  );

  const head = await client.send(
    new HeadObjectCommand({ Bucket: 'smoke-locked', Key: 'v1/smoke/object.txt' }),
  );
  assert.equal(head.ObjectLockMode, 'COMPLIANCE');
  assert.equal(
    Math.floor((head.ObjectLockRetainUntilDate?.getTime() ?? 0) / 1000),
    Math.floor(retainUntil.getTime() / 1000),
  );
});

test('If-None-Match: * refuses a second write of the same key', async () => {
  const put = (body: string) =>
    client.send(
      new PutObjectCommand({
        Bucket: 'smoke-locked',
        Key: 'v1/smoke/once.txt',
        Body: body,
        IfNoneMatch: '*',
      }),
    );
  await put('first');
  await assert.rejects(put('second'), (error: Error & { $metadata?: { httpStatusCode?: number } }) => {
    return error.$metadata?.httpStatusCode === 412;
  });
});

test('a bucket created without Object Lock has no lock configuration', async () => {
  await client.send(new CreateBucketCommand({ Bucket: 'smoke-unlocked' }));
  await assert.rejects(
    client.send(new GetObjectLockConfigurationCommand({ Bucket: 'smoke-unlocked' })),
    /ObjectLockConfigurationNotFound/,
  );
});
