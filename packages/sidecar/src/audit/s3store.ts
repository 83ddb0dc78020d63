// Evidence in S3 under Object Lock: every PUT is COMPLIANCE-locked, carries a
// SHA-256 the server checks, and is conditional (If-None-Match: *) so a retry
// never makes a second version. Credentials come from the AWS SDK's default
// chain (environment, web identity, instance metadata).
import { HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { EvidenceConflictError, type EvidenceObject, type EvidenceStore } from './store.ts';

export type S3StoreOptions = {
  bucket: string;
  /** Before every evidence key: `<prefix>v1/…`. A `/` is added when missing. */
  prefix?: string;
  endpoint?: string;
  region?: string;
  forcePathStyle?: boolean;
};

// The shipper retries with its own backoff; the SDK's retries would only stretch each attempt.
const sdkAttempts = 2;
const connectionTimeoutMs = 5_000;
const requestTimeoutMs = 60_000;

export class S3EvidenceStore implements EvidenceStore {
  readonly #client: S3Client;
  readonly #bucket: string;
  readonly #prefix: string;
  readonly description: string;

  constructor(options: S3StoreOptions) {
    this.#bucket = options.bucket;
    this.#prefix = normalisePrefix(options.prefix);
    this.description = `s3://${options.bucket}/${this.#prefix}`;
    this.#client = new S3Client({
      endpoint: options.endpoint,
      region: options.region,
      forcePathStyle: options.forcePathStyle,
      maxAttempts: sdkAttempts,
      requestHandler: { connectionTimeout: connectionTimeoutMs, requestTimeout: requestTimeoutMs },
    });
  }

  async put(object: EvidenceObject, signal?: AbortSignal): Promise<void> {
    const key = this.#prefix + object.key;
    const checksum = Buffer.from(object.sha256, 'hex').toString('base64');
    try {
      await this.#client.send(
        new PutObjectCommand({
          Bucket: this.#bucket,
          Key: key,
          Body: object.bytes,
          ContentType: key.endsWith('.json') ? 'application/json' : 'application/gzip',
          ChecksumSHA256: checksum,
          IfNoneMatch: '*',
          ObjectLockMode: 'COMPLIANCE',
          ObjectLockRetainUntilDate: object.retainUntil,
        }),
        { abortSignal: signal },
      );
    } catch (error) {
      if (!isPreconditionFailed(error)) throw error;
      // The key exists: an earlier attempt whose answer was lost, or a conflict.
      const head = await this.#client.send(
        new HeadObjectCommand({ Bucket: this.#bucket, Key: key, ChecksumMode: 'ENABLED' }),
        { abortSignal: signal },
      );
      if (head.ChecksumSHA256 !== checksum) {
        throw new EvidenceConflictError(`${key} already holds other bytes`);
      }
    }
  }

  close(): void {
    this.#client.destroy();
  }
}

function normalisePrefix(prefix: string | undefined): string {
  if (!prefix) return '';
  const trimmed = prefix.replace(/^\/+/, '');
  return trimmed.endsWith('/') ? trimmed : `${trimmed}/`;
}

function isPreconditionFailed(error: unknown): boolean {
  return (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 412;
}
