// What the verifier is given: every version of every object in the bucket, and
// what the auditor asks of them. Shared by the checks and re-exported by the
// verifier as its public API.

export type LockMode = 'COMPLIANCE' | 'GOVERNANCE';

/** One object version as listed (ListObjectVersions) and fetched. */
export type StoredObject = {
  key: string;
  versionId?: string;
  isLatest: boolean;
  isDeleteMarker: boolean;
  bytes?: Uint8Array;
  lastModified?: Date;
  /** Base64, as S3 returns `x-amz-checksum-sha256`. */
  checksumSha256?: string;
  lockMode?: LockMode;
  retainUntil?: Date;
};

export type BucketLock = { enabled: boolean; mode?: LockMode };

export type VerifyOptions = {
  /** The bucket's Object Lock configuration; `local` for evidence kept on a plain file system. */
  bucketLock?: BucketLock | 'local';
  now: Date;
  /** Every object must be locked at least this long after it was written. */
  minRetentionDays?: number;
  /** The keys a genesis manifest may register; a key listed more than once may sign any of its streams. */
  trustedKeys?: readonly TrustedKey[];
};

/** A key (RFC 7638 thumbprint) an auditor trusts, and the stream names (a glob) it may sign; any stream without one. */
export type TrustedKey = { keyId: string; streams?: string };
