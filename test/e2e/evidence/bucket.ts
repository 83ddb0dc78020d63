// Reads a bucket back the way an auditor's verifier sees it: every version and
// delete marker, each version's bytes, stored checksum and lock, and the
// bucket's Object Lock configuration; then runs core's verifier over it.
import {
  CreateBucketCommand,
  GetObjectCommand,
  GetObjectLockConfigurationCommand,
  HeadObjectCommand,
  ListObjectVersionsCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import {
  type BucketLock,
  type LockMode,
  type StoredObject,
  type VerifyResult,
  verifyEvidence,
} from '@veil/core';

export async function createLockedBucket(client: S3Client, bucket: string): Promise<void> {
  await client.send(new CreateBucketCommand({ Bucket: bucket, ObjectLockEnabledForBucket: true }));
}

export type VerifiedBucket = { result: VerifyResult; objects: StoredObject[] };

export async function verifyBucket(
  client: S3Client,
  bucket: string,
  options: { minRetentionDays?: number } = {},
): Promise<VerifiedBucket> {
  const [objects, bucketLock] = await Promise.all([readObjects(client, bucket), readLock(client, bucket)]);
  return { result: verifyEvidence(objects, { ...options, bucketLock, now: new Date() }), objects };
}

export function invalidFindings(result: VerifyResult): string[] {
  return result.findings.filter((f) => f.level === 'INVALID').map((f) => `${f.code} ${f.key}: ${f.message}`);
}

async function readLock(client: S3Client, bucket: string): Promise<BucketLock> {
  const answer = await client.send(new GetObjectLockConfigurationCommand({ Bucket: bucket }));
  const config = answer.ObjectLockConfiguration;
  const retention = config?.Rule?.DefaultRetention;
  return {
    enabled: config?.ObjectLockEnabled === 'Enabled',
    mode: retention?.Mode as LockMode | undefined,
  };
}

async function readObjects(client: S3Client, bucket: string): Promise<StoredObject[]> {
  const objects: StoredObject[] = [];
  let keyMarker: string | undefined;
  let versionIdMarker: string | undefined;
  for (;;) {
    const page = await client.send(
      new ListObjectVersionsCommand({
        Bucket: bucket,
        KeyMarker: keyMarker,
        VersionIdMarker: versionIdMarker,
      }),
    );
    for (const marker of page.DeleteMarkers ?? []) {
      objects.push({
        key: marker.Key as string,
        versionId: marker.VersionId,
        isLatest: marker.IsLatest ?? false,
        isDeleteMarker: true,
        lastModified: marker.LastModified,
      });
    }
    for (const version of page.Versions ?? []) {
      objects.push(
        await readVersion(client, bucket, version.Key as string, version.VersionId, version.IsLatest),
      );
    }
    if (!page.IsTruncated) return objects;
    keyMarker = page.NextKeyMarker;
    versionIdMarker = page.NextVersionIdMarker;
  }
}

async function readVersion(
  client: S3Client,
  bucket: string,
  key: string,
  versionId: string | undefined,
  isLatest: boolean | undefined,
): Promise<StoredObject> {
  const target = { Bucket: bucket, Key: key, VersionId: versionId, ChecksumMode: 'ENABLED' as const };
  const got = await client.send(new GetObjectCommand(target));
  const bytes = await got.Body?.transformToByteArray();
  // The lock is read with HEAD: not every S3 server repeats it on GET.
  const head = await client.send(new HeadObjectCommand(target));
  return {
    key,
    versionId,
    isLatest: isLatest ?? false,
    isDeleteMarker: false,
    bytes,
    lastModified: head.LastModified,
    checksumSha256: head.ChecksumSHA256,
    lockMode: head.ObjectLockMode as LockMode | undefined,
    retainUntil: head.ObjectLockRetainUntilDate,
  };
}
