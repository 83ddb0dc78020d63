// A pulled evidence directory: what `veil evidence pull` writes and what
// `veil evidence verify`, `report` and `sessions show` read.
//
//   DIR/
//     bucket.json        where the evidence came from (endpoint, bucket, prefix,
//                        time window, when) and the bucket's settings: versioning
//                        status and Object Lock configuration
//     index.ndjson       one line per object version or delete marker (the same
//                        metadata as the .meta.json files), per key newest first
//                        as S3 lists them; written last, once every file it
//                        lists is synced, so its presence marks a finished pull
//     index.ndjson.earlier  while a pull into an earlier one runs: the last
//                        finished pull's index, to tell what this one no
//                        longer lists; removed once the new index is written
//     objects/<key>@<versionId>             the bytes of that version, as stored
//     objects/<key>@<versionId>.meta.json   its metadata: key, versionId, isLatest,
//                        isDeleteMarker, lastModified, size, checksumSHA256 (base64,
//                        as S3 stores it), lockMode, retainUntil, sha256 (hex, of
//                        the bytes saved) and file (the bytes' path in DIR); a
//                        delete marker has only this file, and so does a version
//                        saved without its bytes (file and sha256 null): every
//                        version of a key outside the evidence layout, which the
//                        verifier only warns of, and a version of an evidence key
//                        larger than maxEvidenceBytes allows, which it reports INVALID
//
// Key segments are percent-encoded wherever they are not plain ([A-Za-z0-9._-]),
// `.` and `..` included, so no key can name a path outside objects/; version
// ids keep only [A-Za-z0-9_-], so `@` and `.meta.json` are never ambiguous.
// Bytes and metadata are written to a temporary name and renamed, so a file
// under its final name is always whole: an interrupted pull resumes from there.
import { createHash } from 'node:crypto';
import { defaultMaxBatchBytes, maxManifestBytes, parseEvidenceKey } from '@veil/core';
import { z } from 'zod';

export const pullFormat = 'veil.pull/v1';
export const bucketFile = 'bucket.json';
export const indexFile = 'index.ndjson';
export const objectsDir = 'objects';
const metaSuffix = '.meta.json';

const isoTime = z.iso.datetime({ offset: true });
const lockMode = z.enum(['COMPLIANCE', 'GOVERNANCE']);

export const objectLockSchema = z.strictObject({
  enabled: z.boolean(),
  /** The default retention applied to objects written without their own lock. */
  mode: lockMode.nullable(),
  days: z.int().min(0).nullable(),
  years: z.int().min(0).nullable(),
});
export type ObjectLockInfo = z.infer<typeof objectLockSchema>;

export const bucketInfoSchema = z.strictObject({
  format: z.literal(pullFormat),
  endpoint: z.string().nullable(),
  bucket: z.string().min(1),
  prefix: z.string(),
  /** The object-time window asked for, if any (`before` is exclusive). */
  from: isoTime.nullable(),
  before: isoTime.nullable(),
  pulledAt: isoTime,
  /** `null` when versioning was never enabled on the bucket. */
  versioning: z.enum(['Enabled', 'Suspended']).nullable(),
  objectLock: objectLockSchema,
});
export type BucketInfo = z.infer<typeof bucketInfoSchema>;

export const objectMetaSchema = z
  .strictObject({
    key: z.string().min(1),
    versionId: z.string().min(1),
    isLatest: z.boolean(),
    isDeleteMarker: z.boolean(),
    lastModified: isoTime.nullable(),
    size: z.int().min(0).nullable(),
    checksumSHA256: z.string().nullable(),
    /** `FULL_OBJECT` for a single PUT; a composite multipart checksum is not a SHA-256 of the bytes. */
    checksumType: z.string().nullable(),
    lockMode: lockMode.nullable(),
    retainUntil: isoTime.nullable(),
    sha256: z
      .string()
      .regex(/^[0-9a-f]{64}$/)
      .nullable(),
    file: z.string().nullable(),
  })
  // Read back from disk, the metadata may only name the file its key and version own.
  .refine((meta) => meta.file === null || meta.file === objectFile(meta.key, meta.versionId), {
    path: ['file'],
    message: 'is not the file of this key and version',
  });
export type ObjectMeta = z.infer<typeof objectMetaSchema>;

/**
 * The largest batch object a pull fetches. The verifier reads no batch of more
 * than core's defaultMaxBatchBytes uncompressed, which gzip stores with well
 * under a thousandth of overhead: a larger version is nothing a sidecar wrote,
 * and fetching it whole would only exhaust memory.
 */
export const maxBatchObjectBytes = defaultMaxBatchBytes + defaultMaxBatchBytes / 1024 + 1024;

/** The largest version of `key` a pull fetches: core's manifest cap, or a batch's; null outside the evidence layout. */
export function maxEvidenceBytes(key: string): number | null {
  const kind = parseEvidenceKey(key)?.kind;
  if (kind === undefined) return null;
  return kind === 'manifest' ? maxManifestBytes : maxBatchObjectBytes;
}

/** A version of an evidence key saved without its bytes: refused as larger than maxEvidenceBytes allows. */
export function isRefused(meta: ObjectMeta): boolean {
  return !meta.isDeleteMarker && meta.file === null && parseEvidenceKey(meta.key) !== null;
}

// Keeps a path segment at most this long, well inside the 255 bytes file
// systems allow, leaving room for `@<versionId>.meta.json`.
const maxSegment = 120;

/** The path, relative to DIR, where the bytes of one version go. */
export function objectFile(key: string, versionId: string): string {
  const segments = key.split('/').map(encodeSegment);
  return `${objectsDir}/${segments.join('/')}@${encodeVersion(versionId)}`;
}

/** The metadata file beside the bytes of `objectFile(key, versionId)`. */
export function metaFile(key: string, versionId: string): string {
  return `${objectFile(key, versionId)}${metaSuffix}`;
}

function encodeSegment(segment: string): string {
  if (segment === '') return '%';
  if (segment === '.') return '%2E';
  if (segment === '..') return '%2E%2E';
  const encoded = percentEncode(segment, /[A-Za-z0-9._-]/);
  // `%L` never comes out of percent-encoding (L is no hex digit), so this stays injective.
  return encoded.length <= maxSegment ? encoded : `%L${createHash('sha256').update(segment).digest('hex')}`;
}

function encodeVersion(versionId: string): string {
  const encoded = percentEncode(versionId, /[A-Za-z0-9_-]/);
  return encoded.length <= maxSegment ? encoded : `%L${createHash('sha256').update(versionId).digest('hex')}`;
}

function percentEncode(text: string, plain: RegExp): string {
  let out = '';
  for (const char of text) {
    if (plain.test(char)) {
      out += char;
      continue;
    }
    for (const byte of Buffer.from(char, 'utf8'))
      out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
