// Evidence in S3 under Object Lock: every PUT is COMPLIANCE-locked, carries a
// SHA-256 the server checks, and is conditional (If-None-Match: *) so a retry
// never makes a second version. Credentials come from the AWS SDK's default
// chain (environment, web identity, instance metadata). Lock dates are counted
// on the store's clock, as an auditor counts them (from Last-Modified).
import {
  GetObjectCommand,
  HeadObjectCommand,
  type HeadObjectCommandOutput,
  PutObjectCommand,
  PutObjectRetentionCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { sha256Hex } from '@veil/core';
import {
  EvidenceConflictError,
  EvidenceNotLockedError,
  type EvidenceObject,
  type EvidenceStore,
  EvidenceStoreSetupError,
  retentionMarginMs,
  type StoreSetupProblem,
} from './store.ts';

export type S3StoreOptions = {
  bucket: string;
  /** Before every evidence key: `<prefix>v1/…`. A `/` is added when missing. */
  prefix?: string;
  endpoint?: string;
  region?: string;
  forcePathStyle?: boolean;
  /** Told once when this host's clock is found far from the store's. */
  log?: (message: string) => void;
};

// The shipper retries with its own backoff; the SDK's retries would only stretch each attempt.
const sdkAttempts = 2;
const connectionTimeoutMs = 5_000;
const requestTimeoutMs = 60_000;

/**
 * A clock difference this large eats a sizeable share of the margin added to
 * every lock: it is told, and a lock written before the SDK learned of it is
 * checked and extended.
 */
const notableSkewMs = retentionMarginMs / 2;

export class S3EvidenceStore implements EvidenceStore {
  readonly #client: S3Client;
  readonly #bucket: string;
  readonly #prefix: string;
  readonly description: string;
  readonly #log: (message: string) => void;
  #skewTold = false;

  constructor(options: S3StoreOptions) {
    this.#bucket = options.bucket;
    this.#log = options.log ?? (() => undefined);
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
    try {
      await this.#putOnce(key, object, signal);
    } catch (error) {
      throw this.#setupErrorOr(error, key);
    } finally {
      this.#tellSkew();
    }
  }

  close(): void {
    this.#client.destroy();
  }

  async #putOnce(key: string, object: EvidenceObject, signal: AbortSignal | undefined): Promise<void> {
    const checksum = Buffer.from(object.sha256, 'hex').toString('base64');
    const offset = this.#clockOffsetMs();
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
          ObjectLockRetainUntilDate: this.#onStoreClock(object.retainUntil, offset),
        }),
        { abortSignal: signal },
      );
    } catch (error) {
      if (!isPreconditionFailed(error)) throw error;
      // The key exists: an earlier attempt whose answer was lost, or a conflict.
      await this.#checkExisting(key, object, checksum, signal);
      return;
    }
    // The answer taught the SDK that the store's clock is well ahead of the one
    // the date sent was counted on (the first request, or a clock that jumped).
    if (this.#clockOffsetMs() - offset > notableSkewMs)
      await this.#checkExisting(key, object, checksum, signal);
  }

  /** Resolves when the stored object is this one, locked as asked; rejects naming what differs. */
  async #checkExisting(
    key: string,
    object: EvidenceObject,
    checksum: string,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const head = await this.#head(key, signal);
    const otherBytes = await this.#otherBytes(key, object, head, checksum, signal);
    if (otherBytes) throw new EvidenceConflictError(`${key} already holds other bytes (${otherBytes})`);
    // A server may store the object even as it refuses the lock (a bucket without
    // Object Lock): the same bytes unlocked are no evidence, only an unlocked copy.
    const until = this.#onStoreClock(object.retainUntil, this.#clockOffsetMs());
    const shortfall = lockShortfall(head, until, this.#storeNow());
    if (!shortfall) return;
    if (!shortfall.extendable)
      throw new EvidenceNotLockedError(`${key} holds these bytes but ${shortfall.reason}`);
    // Only the date falls short (the retention was raised since the attempt that
    // stored it, or that attempt counted on a wrong clock): COMPLIANCE forbids
    // shortening a lock, not extending it.
    await this.#extendLock(key, head.VersionId, until, signal);
    const still = lockShortfall(await this.#head(key, signal), until, this.#storeNow());
    if (still) {
      throw new EvidenceNotLockedError(
        `${key} holds these bytes but ${still.reason}, even after its lock was extended`,
      );
    }
  }

  #head(key: string, signal: AbortSignal | undefined): Promise<HeadObjectCommandOutput> {
    return this.#client.send(
      new HeadObjectCommand({ Bucket: this.#bucket, Key: key, ChecksumMode: 'ENABLED' }),
      { abortSignal: signal },
    );
  }

  async #extendLock(
    key: string,
    versionId: string | undefined,
    until: Date,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    await this.#client.send(
      new PutObjectRetentionCommand({
        Bucket: this.#bucket,
        Key: key,
        VersionId: versionId,
        Retention: { Mode: 'COMPLIANCE', RetainUntilDate: until },
      }),
      { abortSignal: signal },
    );
  }

  /**
   * How far the store's clock is ahead of this host's, as the SDK learned it
   * from the store's answers (their Date header) to sign requests it accepts.
   */
  #clockOffsetMs(): number {
    return this.#client.config.systemClockOffset ?? 0;
  }

  #storeNow(): number {
    return Date.now() + this.#clockOffsetMs();
  }

  /** `date`, counted on this host's clock, on the store's. */
  #onStoreClock(date: Date, offsetMs: number): Date {
    return new Date(date.getTime() + offsetMs);
  }

  /** Once: a clock that is off stays off, and each upload would say it again. */
  #tellSkew(): void {
    const offset = this.#clockOffsetMs();
    if (this.#skewTold || Math.abs(offset) < notableSkewMs) return;
    this.#skewTold = true;
    const seconds = Math.round(Math.abs(offset) / 1000);
    this.#log(
      `audit: this host's clock is ${seconds} s ${offset > 0 ? 'behind' : 'ahead of'} the clock of ${this.description}: evidence locks are counted on the store's clock, but record and manifest times are this host's; set this host's clock right (NTP)`,
    );
  }

  /** How the stored bytes are known to differ; undefined when they are the same. */
  async #otherBytes(
    key: string,
    object: EvidenceObject,
    head: HeadObjectCommandOutput,
    checksum: string,
    signal: AbortSignal | undefined,
  ): Promise<string | undefined> {
    if (head.ChecksumSHA256 !== undefined) {
      return head.ChecksumSHA256 === checksum ? undefined : 'its stored SHA-256 differs';
    }
    // Some S3-compatible stores keep no checksum: the bytes themselves tell.
    const size = object.bytes.length;
    if (head.ContentLength !== size) {
      return `no stored SHA-256; ${head.ContentLength ?? 'unknown'} bytes, not ${size}`;
    }
    const stored = size === 0 ? new Uint8Array() : await this.#readUpTo(key, size + 1, signal);
    if (stored.length !== size) return `no stored SHA-256; ${stored.length} bytes read back, not ${size}`;
    return sha256Hex(stored) === object.sha256
      ? undefined
      : 'no stored SHA-256; its bytes read back hash differently';
  }

  /** At most `limit` bytes from the start of the object: what is hashed never outgrows the evidence. */
  async #readUpTo(key: string, limit: number, signal: AbortSignal | undefined): Promise<Uint8Array> {
    const got = await this.#client.send(
      new GetObjectCommand({ Bucket: this.#bucket, Key: key, Range: `bytes=0-${limit - 1}` }),
      { abortSignal: signal },
    );
    const bytes = (await got.Body?.transformToByteArray()) ?? new Uint8Array();
    return bytes.subarray(0, limit);
  }

  #setupErrorOr(error: unknown, key: string): unknown {
    if (!(error instanceof Error)) return error;
    const code = errorCode(error);
    const problem = setupProblems.get(code);
    if (!problem || (problem === 'no-object-lock' && !/object\s*lock/i.test(error.message))) return error;
    const status = httpStatus(error);
    return new EvidenceStoreSetupError(
      problem,
      code,
      `s3://${this.#bucket}/${key} was refused: ${code}${status ? ` (HTTP ${status})` : ''}: ${error.message.slice(0, 200)}`,
      { cause: error },
    );
  }
}

/**
 * Refusals that last until an operator changes the bucket or the credentials.
 * An `InvalidRequest` counts only when it names Object Lock (checked above).
 */
const setupProblems = new Map<string, StoreSetupProblem>([
  ['InvalidRequest', 'no-object-lock'],
  ['NoSuchBucket', 'no-bucket'],
  ['AccessDenied', 'credentials'],
  ['InvalidAccessKeyId', 'credentials'],
  ['SignatureDoesNotMatch', 'credentials'],
  ['ExpiredToken', 'credentials'],
  ['InvalidToken', 'credentials'],
  // Versity's gateway's name for an unknown access key.
  ['XAdminUserNotFound', 'credentials'],
  // The SDK's default chain found no credentials at all.
  ['CredentialsProviderError', 'credentials'],
]);

/** Why a stored object's lock is not the one asked for; extendable when only its date falls short. */
type LockShortfall = { reason: string; extendable: boolean };

/**
 * Why the stored object's lock is not the one asked for; undefined when it is.
 * The retention counts from when the object was written, as an auditor counts
 * it: a retry long after the attempt that stored it asks for a later date than
 * that attempt locked, and the margin added to every lock absorbs the rest.
 * `retainUntil` and `now` are on the store's clock.
 */
function lockShortfall(
  head: HeadObjectCommandOutput,
  retainUntil: Date,
  now: number,
): LockShortfall | undefined {
  if (head.ObjectLockMode !== 'COMPLIANCE') {
    const reason = head.ObjectLockMode
      ? `is locked in ${head.ObjectLockMode} mode, not COMPLIANCE`
      : // S3 shows the lock only to credentials that may s3:GetObjectRetention.
        'shows no lock (not locked, or the credentials may not s3:GetObjectRetention)';
    return { reason, extendable: false };
  }
  const until = head.ObjectLockRetainUntilDate;
  if (!until) return { reason: 'is locked with no retain-until date', extendable: false };
  const written = head.LastModified?.getTime() ?? now;
  const held = until.getTime() - written;
  const asked = retainUntil.getTime() - now;
  if (held >= asked - retentionMarginMs) return undefined;
  return {
    reason: `is locked only until ${until.toISOString()}, ${Math.ceil((asked - held) / 1000)} s short of the retention asked, counted from its writing`,
    extendable: true,
  };
}

function normalisePrefix(prefix: string | undefined): string {
  if (!prefix) return '';
  const trimmed = prefix.replace(/^\/+/, '');
  return trimmed.endsWith('/') ? trimmed : `${trimmed}/`;
}

function httpStatus(error: unknown): number | undefined {
  return (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
}

/** The S3 error code where the server sent one, else the SDK's error name. */
function errorCode(error: Error): string {
  const code = (error as { Code?: unknown }).Code;
  return typeof code === 'string' ? code : error.name;
}

function isPreconditionFailed(error: unknown): boolean {
  return httpStatus(error) === 412;
}
