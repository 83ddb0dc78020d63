// `veil evidence pull`: every version and delete marker under a prefix, with
// its lock and checksum, into the directory layout of store.ts. Versions are
// immutable, so a version already saved whole, and still agreeing with what S3
// says of it, is never fetched again: an interrupted pull resumes where it
// stopped, and a saved copy edited since is fetched again (repaired). Only
// the bytes the verifier reads are fetched, and none larger than a sidecar
// writes: anyone who may write under the prefix could otherwise plant an object
// that exhausts the auditor's memory on every pull.
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import {
  GetBucketVersioningCommand,
  GetObjectCommand,
  type GetObjectCommandInput,
  type GetObjectCommandOutput,
  GetObjectLockConfigurationCommand,
  GetObjectRetentionCommand,
  HeadObjectCommand,
  ListObjectVersionsCommand,
  type ListObjectVersionsCommandOutput,
  type S3Client,
} from '@aws-sdk/client-s3';
import { maxManifestBytes, parseEvidenceKey } from '@veil/core';
import { CliError } from '../command.ts';
import { fsReason, isMissing } from '../fserror.ts';
import { printable } from '../printable.ts';
import type { Progress } from '../progress.ts';
import { mapConcurrently } from './concurrently.ts';
import { readIndex } from './load.ts';
import { inWindow, sameEndpoint, type TimeWindow } from './options.ts';
import { describeS3Error } from './s3.ts';
import { removeSaved, syncDirs, writeAtomic, writeIndex } from './save.ts';
import {
  type BucketInfo,
  bucketFile,
  bucketInfoSchema,
  indexFile,
  maxBatchObjectBytes,
  maxEvidenceBytes,
  metaFile,
  type ObjectLockInfo,
  type ObjectMeta,
  objectFile,
  objectMetaSchema,
  pullFormat,
} from './store.ts';

export type PullOptions = {
  client: S3Client;
  endpoint: string | undefined;
  bucket: string;
  prefix: string;
  window: TimeWindow;
  out: string;
  progress: Progress;
  now?: () => Date;
};

export type PullResult = {
  versions: number;
  deleteMarkers: number;
  downloaded: number;
  /** Versions already saved whole by an earlier run, agreeing with S3. */
  present: number;
  /** Saved versions that disagreed with S3 (edited since they were pulled), fetched again. */
  repaired: number;
  /** Versions of keys outside the evidence layout: their metadata saved, never their bytes. */
  foreign: number;
  /** Versions of evidence keys larger than maxEvidenceBytes allows: their metadata saved, their bytes refused. */
  refused: number;
  /**
   * Versions and delete markers the last finished pull into the directory
   * listed that this one does not: deleted from the bucket since (a lock
   * expired or bypassed), or outside this pull's window.
   */
  unlisted: number;
  /** The first few of them, as `KEY version ID`. */
  unlistedNamed: string[];
};

/** One entry of ListObjectVersions: a version or a delete marker. */
type Listed = {
  /** The key in the evidence layout (`v1/…`): the object's key without the store's own prefix. */
  key: string;
  /** The key in the bucket. */
  objectKey: string;
  versionId: string;
  isLatest: boolean;
  isDeleteMarker: boolean;
  lastModified: Date | undefined;
  size: number | null;
};

/**
 * Runs one S3 request, turning its failure into a CliError an auditor can act
 * on, which names what the request was `about` (see requestAbout).
 */
type S3Call = <T>(request: () => Promise<T>, about?: string) => Promise<T>;

/** A request on one version, as its failure names it: the operation, the key in the bucket, the version. */
function requestAbout(operation: string, request: Pick<GetObjectCommandInput, 'Key' | 'VersionId'>): string {
  return `${operation} ${printable(request.Key ?? '')} version ${printable(request.VersionId ?? '')}`;
}

const concurrency = 4;

export async function pullEvidence(options: PullOptions): Promise<PullResult> {
  const { client, bucket, endpoint } = options;
  const s3: S3Call = async (request, about) => {
    try {
      return await request();
    } catch (error) {
      // Already worded for the auditor: a listing or a body that cannot be trusted.
      if (error instanceof CliError) throw error;
      throw describeS3Error(error, bucket, endpoint, about);
    }
  };
  const info: BucketInfo = {
    format: pullFormat,
    endpoint: endpoint ?? null,
    bucket,
    prefix: options.prefix,
    from: options.window.from?.toISOString() ?? null,
    before: options.window.before?.toISOString() ?? null,
    pulledAt: (options.now?.() ?? new Date()).toISOString(),
    versioning: await s3(() => versioningStatus(client, bucket)),
    objectLock: await s3(() => objectLockConfiguration(client, bucket)),
  };
  await prepareDirectory(options.out, info);
  const earlier = await earlierVersions(options.out);
  const listed = selectWindow(await s3(() => listVersions(client, bucket, options.prefix)), options.window);
  const versions = listed.filter((entry) => !entry.isDeleteMarker);
  options.progress.start(
    versions.length,
    versions.filter(isFetched).reduce((total, entry) => total + (entry.size ?? 0), 0),
  );
  const result: PullResult = {
    versions: versions.length,
    deleteMarkers: listed.length - versions.length,
    downloaded: 0,
    present: 0,
    repaired: 0,
    foreign: 0,
    refused: 0,
    ...unlistedSince(earlier, listed),
  };
  try {
    const metas = await mapConcurrently(listed, concurrency, (entry) =>
      pullEntry(entry, options, s3, result),
    );
    // The index says the pull is finished: it must not outlive a power loss as
    // an empty file, nor outlive the files it lists. Their bytes were synced
    // as each was written; their names are synced here, once a directory.
    await syncDirs(options.out, metas);
    await writeIndex(options.out, metas);
    await removeSaved(options.out, earlierIndexFile);
  } catch (error) {
    // The error is printed next: on a line of its own, not on the end of the bar.
    options.progress.abort();
    throw error;
  }
  options.progress.finish(pullCounts(result));
  return result;
}

/** What a pull did with each version, as the pull prints it. */
export function pullCounts(result: PullResult): string {
  const counts = [
    `${result.downloaded} downloaded, ${result.present} already present, ${result.repaired} repaired`,
  ];
  if (result.foreign > 0) counts.push(`${result.foreign} outside the evidence layout (metadata only)`);
  if (result.refused > 0) {
    counts.push(
      `${result.refused} refused as larger than any manifest (${maxManifestBytes} bytes) or batch (${maxBatchObjectBytes} bytes) can be`,
    );
  }
  if (result.unlisted > 0) {
    const more = result.unlisted > result.unlistedNamed.length ? ', …' : '';
    counts.push(
      `${result.unlisted} saved by the last pull no longer listed (deleted from the bucket since, or outside this window: ${result.unlistedNamed.join(', ')}${more})`,
    );
  }
  return counts.join(', ');
}

/** Where a pull keeps the index of the last finished pull until its own is written. */
const earlierIndexFile = `${indexFile}.earlier`;

/** How many versions of the last finished pull are named in its counts. */
const unlistedNamedCount = 3;

type VersionRef = Pick<ObjectMeta, 'key' | 'versionId'>;

const versionRef = (version: VersionRef) => JSON.stringify([version.key, version.versionId]);

/**
 * The versions the last finished pull into `out` listed, kept aside by
 * prepareDirectory (or left there by a pull interrupted since); none after a
 * first pull.
 */
async function earlierVersions(out: string): Promise<Map<string, VersionRef>> {
  const earlier = new Map<string, VersionRef>();
  try {
    await readIndex(out, earlierIndexFile, ({ key, versionId }) => {
      earlier.set(versionRef({ key, versionId }), { key, versionId });
    });
  } catch (error) {
    if (isMissing(error)) return earlier;
    if (!(error instanceof CliError)) throw error;
    throw new CliError(
      `${error.message}: it is the last pull's index, kept to tell what this pull no longer lists; move it away to pull without that check`,
    );
  }
  return earlier;
}

function unlistedSince(
  earlier: Map<string, VersionRef>,
  listed: readonly Listed[],
): Pick<PullResult, 'unlisted' | 'unlistedNamed'> {
  for (const entry of listed) earlier.delete(versionRef(entry));
  const named = [...earlier.values()]
    .slice(0, unlistedNamedCount)
    .map(({ key, versionId }) => `${printable(key)} version ${printable(versionId)}`);
  return { unlisted: earlier.size, unlistedNamed: named };
}

/** Whether the verifier needs, and may be given, the bytes of a listed version. */
function isFetched(entry: Listed): boolean {
  const limit = maxEvidenceBytes(entry.key);
  return limit !== null && (entry.size === null || entry.size <= limit);
}

/** Saves one listed entry, or finds it saved whole by an earlier run; counts it in `result`. */
async function pullEntry(
  entry: Listed,
  options: PullOptions,
  s3: S3Call,
  result: PullResult,
): Promise<ObjectMeta> {
  const { out, progress } = options;
  if (entry.isDeleteMarker) {
    const meta = markerMeta(entry);
    await writeAtomic(out, metaFile(entry.key, entry.versionId), metaJson(meta));
    return meta;
  }
  if (!isFetched(entry)) return withoutBytes(entry, options, s3, result);
  const saved = await savedMeta(out, entry);
  let meta: ObjectMeta | null;
  if (saved) meta = await resumeSaved(saved, entry, options, s3, result);
  else {
    meta = await download(s3, options, entry);
    if (meta !== null) result.downloaded += 1;
  }
  // Refused on the length its GET answered with, as it would have been on a listed size.
  if (meta === null) return withoutBytes(entry, options, s3, result);
  progress.advance(entry.size ?? 0);
  return meta;
}

/** Saves the metadata of a version whose bytes the verifier does not read; counts it as foreign or refused. */
async function withoutBytes(
  entry: Listed,
  options: PullOptions,
  s3: S3Call,
  result: PullResult,
): Promise<ObjectMeta> {
  const meta = await metadataOnly(s3, options, entry);
  if (parseEvidenceKey(entry.key) === null) result.foreign += 1;
  else result.refused += 1;
  options.progress.advance(0);
  return meta;
}

/**
 * A version saved by an earlier run. Whoever held the directory since could
 * have edited it, bytes and metadata alike, so it is kept only if it agrees
 * with what S3 says of that version now; otherwise it is fetched again (null:
 * refused as too large, see `download`).
 */
async function resumeSaved(
  saved: ObjectMeta,
  entry: Listed,
  options: PullOptions,
  s3: S3Call,
  result: PullResult,
): Promise<ObjectMeta | null> {
  const request = { Bucket: options.bucket, Key: entry.objectKey, VersionId: entry.versionId };
  const head = await s3(
    () => options.client.send(new HeadObjectCommand({ ...request, ChecksumMode: 'ENABLED' })),
    requestAbout('HeadObject', request),
  );
  const stored = { checksumSHA256: head.ChecksumSHA256 ?? null, checksumType: head.ChecksumType ?? null };
  if (!agreesWithS3(saved, entry, stored)) {
    const fresh = await download(s3, options, entry);
    if (fresh === null) return null;
    // A version whose stored bytes fail S3's own checksum is fetched each time, and is no repair.
    if (sameContent(saved, fresh)) result.present += 1;
    else result.repaired += 1;
    return fresh;
  }
  // A retention may have been extended, or a GOVERNANCE lock made COMPLIANCE, since.
  const lock = await s3(
    () => retention(options.client, request),
    requestAbout('GetObjectRetention', request),
  );
  const meta = { ...saved, ...lockMeta(lock) };
  await writeAtomic(options.out, metaFile(entry.key, entry.versionId), metaJson(meta));
  result.present += 1;
  return meta;
}

/**
 * Whether the saved metadata, and the bytes it hashes, match the listing's kind
 * (a version, not a delete marker), time and size and S3's full-object SHA-256. Without that checksum S3 says nothing
 * of the bytes, and a same-size edit would pass: such a version is never
 * taken as saved, but fetched again and compared.
 */
function agreesWithS3(
  saved: ObjectMeta,
  entry: Listed,
  stored: Pick<ObjectMeta, 'checksumSHA256' | 'checksumType'>,
): boolean {
  const fullObject = stored.checksumType === null || stored.checksumType === 'FULL_OBJECT';
  const savedBytes = saved.sha256 === null ? null : Buffer.from(saved.sha256, 'hex').toString('base64');
  return (
    saved.key === entry.key &&
    saved.versionId === entry.versionId &&
    saved.isDeleteMarker === entry.isDeleteMarker &&
    (entry.lastModified === undefined || saved.lastModified === entry.lastModified.toISOString()) &&
    (entry.size === null || saved.size === entry.size) &&
    saved.checksumSHA256 === stored.checksumSHA256 &&
    saved.checksumType === stored.checksumType &&
    stored.checksumSHA256 !== null &&
    fullObject &&
    savedBytes === stored.checksumSHA256
  );
}

function sameContent(a: ObjectMeta, b: ObjectMeta): boolean {
  const fields = [
    'isDeleteMarker',
    'lastModified',
    'size',
    'checksumSHA256',
    'checksumType',
    'sha256',
  ] as const;
  return fields.every((field) => a[field] === b[field]);
}

async function versioningStatus(client: S3Client, bucket: string): Promise<BucketInfo['versioning']> {
  const { Status } = await client.send(new GetBucketVersioningCommand({ Bucket: bucket }));
  return Status === 'Enabled' || Status === 'Suspended' ? Status : null;
}

async function objectLockConfiguration(client: S3Client, bucket: string): Promise<ObjectLockInfo> {
  try {
    const { ObjectLockConfiguration: config } = await client.send(
      new GetObjectLockConfigurationCommand({ Bucket: bucket }),
    );
    const retention = config?.Rule?.DefaultRetention;
    return {
      enabled: config?.ObjectLockEnabled === 'Enabled',
      mode: retention?.Mode ?? null,
      days: retention?.Days ?? null,
      years: retention?.Years ?? null,
    };
  } catch (error) {
    // A bucket created without Object Lock has no configuration at all.
    if ((error as Error).name === 'ObjectLockConfigurationNotFoundError') {
      return { enabled: false, mode: null, days: null, years: null };
    }
    throw error;
  }
}

/** Refuses to mix two sources in one directory; an unfinished pull of the same source resumes. */
async function prepareDirectory(out: string, info: BucketInfo): Promise<void> {
  try {
    await mkdir(out, { recursive: true });
  } catch (error) {
    throw new CliError(`cannot create ${out}: ${fsReason(error)}`);
  }
  const existing = await readJson(join(out, bucketFile));
  if (existing === undefined) await refuseOtherContent(out);
  else {
    const earlier = bucketInfoSchema.safeParse(existing);
    const same =
      earlier.success &&
      earlier.data.bucket === info.bucket &&
      earlier.data.prefix === info.prefix &&
      sameEndpoint(earlier.data.endpoint, info.endpoint);
    if (!same) {
      throw new CliError(`${out} holds evidence from another source: pull into an empty directory`);
    }
  }
  await setEarlierIndexAside(out);
  await writeAtomic(out, bucketFile, `${JSON.stringify(info, null, 2)}\n`);
}

/**
 * Until the new index is written, the directory is an unfinished pull. The
 * last finished pull's index is kept, to tell what this one no longer lists;
 * without an index, the one an interrupted pull set aside is kept.
 */
async function setEarlierIndexAside(out: string): Promise<void> {
  try {
    await rename(join(out, indexFile), join(out, earlierIndexFile));
  } catch (error) {
    if (!isMissing(error))
      throw new CliError(`cannot write ${join(out, earlierIndexFile)}: ${fsReason(error)}`);
  }
}

/**
 * A folder that holds no bucket.json is no pull: whatever it holds is someone
 * else's, and a pull would mix its files in with them. Only a first pull cut
 * short before its bucket.json was renamed into place is taken as one.
 */
async function refuseOtherContent(out: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(out);
  } catch (error) {
    throw new CliError(`cannot read ${out}: ${fsReason(error)}`);
  }
  if (names.some((name) => name !== `${bucketFile}.partial`)) {
    throw new CliError(
      `${out} is not empty and holds no earlier pull (no ${bucketFile}): pull into an empty directory`,
    );
  }
}

/** Every version and delete marker, grouped by key, newest first within a key. */
async function listVersions(client: S3Client, bucket: string, prefix: string): Promise<Listed[]> {
  const root = storePrefix(prefix);
  const byKey = new Map<string, Listed[]>();
  const seen = new Set<string>();
  const add = (entry: Omit<Listed, 'key'>) => {
    // Another store's objects that merely share the listing prefix are not this evidence.
    if (!entry.objectKey.startsWith(root)) return;
    // Some servers start a page with the version its marker named, which ended the page before.
    const id = JSON.stringify([entry.objectKey, entry.versionId, entry.isDeleteMarker]);
    if (seen.has(id)) return;
    seen.add(id);
    const listed = { ...entry, key: entry.objectKey.slice(root.length) };
    const versions = byKey.get(listed.key);
    if (versions) versions.push(listed);
    else byKey.set(listed.key, [listed]);
  };
  for await (const page of listPages(client, bucket, prefix)) {
    for (const version of page.Versions ?? []) {
      if (!version.Key) continue;
      add({
        objectKey: version.Key,
        versionId: version.VersionId ?? 'null',
        isLatest: version.IsLatest === true,
        isDeleteMarker: false,
        lastModified: version.LastModified,
        size: version.Size ?? null,
      });
    }
    for (const marker of page.DeleteMarkers ?? []) {
      if (!marker.Key) continue;
      add({
        objectKey: marker.Key,
        versionId: marker.VersionId ?? 'null',
        isLatest: marker.IsLatest === true,
        isDeleteMarker: true,
        lastModified: marker.LastModified,
        size: null,
      });
    }
  }
  // A page lists versions and delete markers apart; time (stable, so S3's order breaks ties) merges them.
  const time = (entry: Listed) => entry.lastModified?.getTime() ?? 0;
  return [...byKey.values()].flatMap((versions) => versions.sort((a, b) => time(b) - time(a)));
}

/**
 * What a sidecar's VEIL_S3_PREFIX put before the evidence layout's `v1/`, read
 * from the listing prefix: up to its `v1/` segment (`team-a/v1/streams…` →
 * `team-a/`), or, without one, the prefix itself as a folder (`team-a` →
 * `team-a/`). Keys are kept without it, so they verify as the layout's own.
 */
export function storePrefix(prefix: string): string {
  const segments = prefix.split('/');
  const root = segments.indexOf('v1');
  if (root >= 0)
    return segments
      .slice(0, root)
      .map((segment) => `${segment}/`)
      .join('');
  return prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`;
}

/** The markers a ListObjectVersions request starts after; none for the first page. */
export type ListMarkers = { keyMarker: string | undefined; versionIdMarker: string | undefined };

export type VersionPage = Pick<
  ListObjectVersionsCommandOutput,
  'IsTruncated' | 'NextKeyMarker' | 'NextVersionIdMarker' | 'Versions' | 'DeleteMarkers'
>;

function listPages(client: S3Client, bucket: string, prefix: string): AsyncGenerator<VersionPage> {
  return pagesOf(({ keyMarker, versionIdMarker }) =>
    client.send(
      new ListObjectVersionsCommand({
        Bucket: bucket,
        Prefix: prefix,
        KeyMarker: keyMarker,
        VersionIdMarker: versionIdMarker,
      }),
    ),
  );
}

/**
 * Every page of a listing, each asked for after the markers of the one before.
 * A truncated page that names no marker, or the same markers again, would end
 * the pull with part of the bucket or never end it: either is refused, since a
 * pull that stops quietly reads as the whole evidence.
 */
export async function* pagesOf(
  fetchPage: (markers: ListMarkers) => Promise<VersionPage>,
): AsyncGenerator<VersionPage> {
  let markers: ListMarkers = { keyMarker: undefined, versionIdMarker: undefined };
  for (let number = 1; ; number += 1) {
    const page = await fetchPage(markers);
    yield page;
    if (!page.IsTruncated) return;
    const next = { keyMarker: page.NextKeyMarker, versionIdMarker: page.NextVersionIdMarker };
    // Without its version marker a page would continue after the whole key, skipping its older versions.
    for (const [marker, value] of [
      ['NextKeyMarker', next.keyMarker],
      ['NextVersionIdMarker', next.versionIdMarker],
    ] as const) {
      if (value !== undefined) continue;
      throw new CliError(
        `the bucket listing is cut short: page ${number} says more follows but names no ${marker} to continue from`,
      );
    }
    if (next.keyMarker === markers.keyMarker && next.versionIdMarker === markers.versionIdMarker) {
      throw new CliError(
        `the bucket listing does not advance: page ${number} names the same NextKeyMarker and NextVersionIdMarker as the page before`,
      );
    }
    markers = next;
  }
}

/**
 * A window selects whole streams, so the chain of each stream selected still
 * verifies: every stream whose uploads, from its first to its last, overlap
 * the window. A stream that uploaded before and after the window but not in
 * it is still taken: its batch uploaded after the window's end may hold
 * records from inside it. A stream first uploaded after the window's end is
 * not. An object outside the evidence layout is selected by its own times.
 */
function selectWindow(listed: Listed[], window: TimeWindow): Listed[] {
  if (!window.from && !window.before) return listed;
  const groupOf = (entry: Listed) => parseEvidenceKey(entry.key)?.stream ?? `key:${entry.key}`;
  const spans = new Map<string, { first: Date; last: Date }>();
  for (const entry of listed) {
    const time = entry.lastModified;
    if (!time) continue;
    const span = spans.get(groupOf(entry));
    if (!span) spans.set(groupOf(entry), { first: time, last: time });
    else if (time < span.first) span.first = time;
    else if (time > span.last) span.last = time;
  }
  const overlaps = ({ first, last }: { first: Date; last: Date }) =>
    inWindow({ from: window.from, before: undefined }, last) &&
    inWindow({ from: undefined, before: window.before }, first);
  const selected = new Set([...spans].filter(([, span]) => overlaps(span)).map(([group]) => group));
  return listed.filter((entry) => selected.has(groupOf(entry)));
}

function markerMeta(entry: Listed): ObjectMeta {
  return {
    key: entry.key,
    versionId: entry.versionId,
    isLatest: entry.isLatest,
    isDeleteMarker: true,
    lastModified: entry.lastModified?.toISOString() ?? null,
    size: null,
    checksumSHA256: null,
    checksumType: null,
    lockMode: null,
    retainUntil: null,
    sha256: null,
    file: null,
  };
}

/** The metadata of a version an earlier run saved whole, with whether it is the latest refreshed; else undefined. */
async function savedMeta(out: string, entry: Listed): Promise<ObjectMeta | undefined> {
  const parsed = objectMetaSchema.safeParse(await readJson(join(out, metaFile(entry.key, entry.versionId))));
  if (!parsed.success || parsed.data.file === null || parsed.data.sha256 === null) return undefined;
  let bytes: Buffer;
  try {
    bytes = await readFile(join(out, parsed.data.file));
  } catch {
    return undefined;
  }
  if (createHash('sha256').update(bytes).digest('hex') !== parsed.data.sha256) return undefined;
  return { ...parsed.data, isLatest: entry.isLatest };
}

function lockMeta(lock: { mode: string | undefined; retainUntil: Date | undefined }) {
  return {
    lockMode: lock.mode === 'COMPLIANCE' || lock.mode === 'GOVERNANCE' ? lock.mode : null,
    retainUntil: lock.retainUntil?.toISOString() ?? null,
  } satisfies Pick<ObjectMeta, 'lockMode' | 'retainUntil'>;
}

/** What a GET or HEAD answered of a version, and where its bytes were saved (null: they were not). */
function versionMeta(
  entry: Listed,
  answer: Pick<GetObjectCommandOutput, 'LastModified' | 'ChecksumSHA256' | 'ChecksumType'>,
  size: number | null,
  lock: { mode: string | undefined; retainUntil: Date | undefined },
  saved: { sha256: string; file: string } | null,
): ObjectMeta {
  return {
    key: entry.key,
    versionId: entry.versionId,
    isLatest: entry.isLatest,
    isDeleteMarker: false,
    lastModified: (entry.lastModified ?? answer.LastModified)?.toISOString() ?? null,
    size,
    checksumSHA256: answer.ChecksumSHA256 ?? null,
    checksumType: answer.ChecksumType ?? null,
    ...lockMeta(lock),
    sha256: saved?.sha256 ?? null,
    file: saved?.file ?? null,
  };
}

/** Fetches and saves a version; null, and nothing saved, when its GET answers with more bytes than evidence can be. */
async function download(s3: S3Call, options: PullOptions, entry: Listed): Promise<ObjectMeta | null> {
  const { client, bucket, out } = options;
  const request: GetObjectCommandInput = { Bucket: bucket, Key: entry.objectKey, VersionId: entry.versionId };
  const about = requestAbout('GetObject', request);
  const response = await s3(
    () => client.send(new GetObjectCommand({ ...request, ChecksumMode: 'ENABLED' })),
    about,
  );
  if (isUnlistedOversize(entry, response)) return null;
  const bytes = await s3(() => readKeepingMismatch(client, request, response.Body), about);
  checkSize(entry, bytes);
  const lock = await lockOf(s3, client, request, response);
  const file = objectFile(entry.key, entry.versionId);
  await writeAtomic(out, file, bytes, { sync: 'bytes' });
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const meta = versionMeta(entry, response, bytes.length, lock, { sha256, file });
  await writeAtomic(out, metaFile(entry.key, entry.versionId), metaJson(meta));
  return meta;
}

/**
 * A version the verifier reads no bytes of: a key outside the evidence layout
 * (only its key is reported, and its lock checked) or one too large to be
 * evidence. Its time, size, stored checksum and lock come from a HEAD.
 */
async function metadataOnly(s3: S3Call, options: PullOptions, entry: Listed): Promise<ObjectMeta> {
  const { client, bucket, out } = options;
  const request: GetObjectCommandInput = { Bucket: bucket, Key: entry.objectKey, VersionId: entry.versionId };
  const head = await s3(
    () => client.send(new HeadObjectCommand({ ...request, ChecksumMode: 'ENABLED' })),
    requestAbout('HeadObject', request),
  );
  const lock = await lockOf(s3, client, request, head);
  const meta = versionMeta(entry, head, entry.size ?? head.ContentLength ?? null, lock, null);
  // Bytes an earlier pull saved of it are no longer part of the directory.
  await removeSaved(out, objectFile(entry.key, entry.versionId));
  await writeAtomic(out, metaFile(entry.key, entry.versionId), metaJson(meta));
  return meta;
}

/** The lock a GET or HEAD answered with; asked for directly when the answer left it off. */
async function lockOf(
  s3: S3Call,
  client: S3Client,
  request: GetObjectCommandInput,
  answer: Pick<GetObjectCommandOutput, 'ObjectLockMode' | 'ObjectLockRetainUntilDate'>,
): Promise<{ mode: string | undefined; retainUntil: Date | undefined }> {
  if (answer.ObjectLockMode !== undefined) {
    return { mode: answer.ObjectLockMode, retainUntil: answer.ObjectLockRetainUntilDate };
  }
  return s3(() => retention(client, request), requestAbout('GetObjectRetention', request));
}

/**
 * A listing without sizes cannot keep an oversized version from being fetched:
 * its GET's length does, and its body is dropped unread.
 */
function isUnlistedOversize(entry: Listed, response: GetObjectCommandOutput): boolean {
  const length = response.ContentLength;
  const limit = maxEvidenceBytes(entry.key);
  if (entry.size !== null || length === undefined || limit === null || length <= limit) return false;
  if (response.Body instanceof Readable) response.Body.destroy();
  return true;
}

/** A body cut short, or longer than listed, is no copy of the version: nothing of it is saved. */
function checkSize(entry: Listed, bytes: Uint8Array): void {
  if (entry.size === null || bytes.length === entry.size) return;
  throw new CliError(
    `${printable(entry.key)} version ${printable(entry.versionId)}: received ${bytes.length} bytes where the listing says ${entry.size}; nothing saved: pull again`,
  );
}

/**
 * The body of a GET made with ChecksumMode. When the stored bytes no longer
 * match their stored checksum, they are fetched again unchecked and kept as
 * they are, for the verifier to report, rather than failing the whole pull.
 */
async function readKeepingMismatch(
  client: S3Client,
  request: GetObjectCommandInput,
  body: BodyStream | undefined,
): Promise<Uint8Array> {
  try {
    return await readBody(body);
  } catch (error) {
    if (!/checksum mismatch/i.test((error as Error).message)) throw error;
    return readBody((await client.send(new GetObjectCommand(request))).Body);
  }
}

type BodyStream = { transformToByteArray(): Promise<Uint8Array> };

async function readBody(body: BodyStream | undefined): Promise<Uint8Array> {
  return body ? await body.transformToByteArray() : new Uint8Array();
}

/**
 * Some servers leave the lock headers off a GET of an older version; its
 * retention is then asked for directly. No retention means not locked.
 */
async function retention(
  client: S3Client,
  request: GetObjectCommandInput,
): Promise<{ mode: string | undefined; retainUntil: Date | undefined }> {
  try {
    const { Retention } = await client.send(new GetObjectRetentionCommand(request));
    return { mode: Retention?.Mode, retainUntil: Retention?.RetainUntilDate };
  } catch (error) {
    const name = (error as Error).name;
    if (name === 'NoSuchObjectLockConfiguration' || name === 'InvalidRequest') {
      return { mode: undefined, retainUntil: undefined };
    }
    throw error;
  }
}

function metaJson(meta: ObjectMeta): string {
  return `${JSON.stringify(meta, null, 2)}\n`;
}

async function readJson(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return undefined;
  }
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
