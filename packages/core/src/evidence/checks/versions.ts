// Checks of the bucket's Object Lock and of each object's versions, locks and
// stored SHA-256: what the store vouches for, before any manifest is read.

import { sha256Base64 } from '../hash.ts';
import { parseEvidenceKey } from '../manifest.ts';
import { noStream, type Report } from './findings.ts';
import type { StoredObject, VerifyOptions } from './inputs.ts';

const dayMs = 86_400_000;

export function checkBucket(lock: VerifyOptions['bucketLock'], report: Report): void {
  if (lock === 'local') {
    report(
      'WARN',
      noStream,
      noStream,
      'not-worm',
      'evidence read from a local directory is not WORM storage',
    );
  } else if (lock === undefined) {
    report(
      'INVALID',
      noStream,
      noStream,
      'bucket-lock-missing',
      'the bucket Object Lock configuration is unknown',
    );
  } else if (!lock.enabled) {
    report('INVALID', noStream, noStream, 'bucket-lock-disabled', 'Object Lock is not enabled on the bucket');
  } else if (lock.mode !== undefined && lock.mode !== 'COMPLIANCE') {
    report('WARN', noStream, noStream, 'bucket-lock-default', `the bucket default retention is ${lock.mode}`);
  }
}

/** Says when no retention length was asked for, or none can be shown: silence would read as a pass. */
export function checkRetentionAsked(options: VerifyOptions, report: Report): void {
  const days = options.minRetentionDays;
  if (options.bucketLock === 'local') {
    if (days === undefined) return;
    // Files lock nothing: a retention asked for cannot be shown.
    const message = `evidence read from a local directory is retained by nothing, not ${days} days`;
    report('INVALID', noStream, noStream, 'retention-too-short', message);
  } else if (days === undefined) {
    // Any COMPLIANCE lock passes then, even one of a second.
    const message = 'retention length not checked: pass --min-retention-days';
    report('WARN', noStream, noStream, 'retention-not-checked', message);
  }
}

/** Whether two versions hold the same bytes, or nothing at hand can tell. */
type Comparison = 'same' | 'different' | 'unknown';

/** How the later versions compare with the first: `different` if any differs, else `unknown` if any cannot be told. */
function compareWithFirst(data: readonly StoredObject[]): Comparison {
  const [first, ...later] = data;
  if (first === undefined) return 'same';
  const comparisons = later.map((version) => compareVersions(first, version));
  if (comparisons.includes('different')) return 'different';
  return comparisons.includes('unknown') ? 'unknown' : 'same';
}

/**
 * Compared in place (as `noteSeq` compares records); where the bytes of either
 * were not fetched (a pull keeps none of a key outside the evidence layout),
 * by the SHA-256 S3 stored with each (a version's bytes are checked against
 * its own elsewhere). Without that, as S3 keeps none for an upload made
 * without a checksum, nothing tells them apart or alike.
 */
function compareVersions(a: StoredObject, b: StoredObject): Comparison {
  if (a.bytes !== undefined && b.bytes !== undefined) {
    return Buffer.compare(a.bytes, b.bytes) === 0 ? 'same' : 'different';
  }
  if (a.checksumSha256 === undefined || b.checksumSha256 === undefined) return 'unknown';
  return a.checksumSha256 === b.checksumSha256 ? 'same' : 'different';
}

/** Flags extra versions, delete markers and weak locks; returns the version to verify. */
export function checkVersions(
  key: string,
  versions: readonly StoredObject[],
  options: VerifyOptions,
  report: Report,
): StoredObject | undefined {
  const stream = parseEvidenceKey(key)?.stream ?? noStream;
  const markers = versions.filter((v) => v.isDeleteMarker).length;
  // Under Object Lock a version cannot change, only gain a successor: the first one is the evidence.
  const data = versions.filter((v) => !v.isDeleteMarker).sort(byLastModified);
  if (markers > 0) report('INVALID', stream, key, 'hidden-object', `hidden by ${markers} delete marker(s)`);
  const comparison = data.length > 1 ? compareWithFirst(data) : 'same';
  if (comparison === 'same' && data.length > 1) {
    // An upload retried while the first was still under way (a process killed
    // mid-upload, then restarted) can slip past a store's If-None-Match: the
    // same bytes again, which alter nothing.
    report(
      'WARN',
      stream,
      key,
      'rewritten-object',
      `${data.length} versions, all with the same bytes: the object was written again unchanged`,
    );
  } else if (comparison === 'unknown') {
    const message = `${data.length} versions that cannot be compared: their bytes were not fetched and the store kept no SHA-256 of them`;
    report('WARN', stream, key, 'versions-not-compared', message);
  } else if (comparison === 'different') {
    report(
      'INVALID',
      stream,
      key,
      'replaced-object',
      `${data.length} versions: the object was written again`,
    );
  }
  for (const version of data) {
    if (options.bucketLock !== 'local') {
      checkLock(stream, key, version, options, report);
      checkChecksumStored(stream, key, version, report);
    }
    if (version.bytes && version.checksumSha256 !== undefined) {
      if (version.checksumSha256 !== sha256Base64(version.bytes)) {
        report(
          'INVALID',
          stream,
          key,
          'checksum-mismatch',
          `${describe(version)} does not match its stored SHA-256`,
        );
      }
    }
  }
  return data[0];
}

function checkLock(
  stream: string,
  key: string,
  version: StoredObject,
  options: VerifyOptions,
  report: Report,
): void {
  if (version.lockMode !== 'COMPLIANCE' || version.retainUntil === undefined) {
    const lock = version.lockMode ?? 'not locked';
    report(
      'INVALID',
      stream,
      key,
      'object-not-locked',
      `${describe(version)} is ${lock}; evidence needs COMPLIANCE`,
    );
    return;
  }
  if (
    options.minRetentionDays !== undefined &&
    retainedTooShort(version, options.minRetentionDays, options.now)
  ) {
    const until = version.retainUntil.toISOString();
    const message = `${describe(version)} is retained until ${until}, less than ${options.minRetentionDays} days`;
    report('INVALID', stream, key, 'retention-too-short', message);
  }
  if (version.retainUntil.getTime() <= options.now.getTime()) {
    report('WARN', stream, key, 'retention-expired', `${describe(version)} is no longer locked`);
  }
}

/**
 * Whether a version's lock ends sooner than `minRetentionDays` after it was
 * written (`now` when its time is unknown). Shared with the report, so its
 * retention table says what the findings say.
 */
export function retainedTooShort(version: StoredObject, minRetentionDays: number, now: Date): boolean {
  if (version.retainUntil === undefined) return false;
  const written = (version.lastModified ?? now).getTime();
  return version.retainUntil.getTime() < written + minRetentionDays * dayMs;
}

/** DESIGN puts a SHA-256 on every PUT: without one, nothing the store holds vouches for the bytes. */
function checkChecksumStored(stream: string, key: string, version: StoredObject, report: Report): void {
  if (version.checksumSha256 !== undefined) return;
  const message = `${describe(version)} was stored without a full-object SHA-256 checksum`;
  report('WARN', stream, key, 'checksum-missing', message);
}

function describe(version: StoredObject): string {
  return version.versionId === undefined ? 'the object' : `version ${version.versionId}`;
}

/**
 * Oldest first. S3 keeps Last-Modified to the second, so a version written
 * within the second of the one before ties with it: of two, the latest is the
 * later (its predecessor, the evidence, is not the latest).
 */
function byLastModified(a: StoredObject, b: StoredObject): number {
  const byTime = (a.lastModified?.getTime() ?? 0) - (b.lastModified?.getTime() ?? 0);
  return byTime !== 0 ? byTime : Number(a.isLatest) - Number(b.isLatest);
}
