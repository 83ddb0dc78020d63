// Reads evidence from disk for the verifier: either a directory written by
// `veil evidence pull` (see store.ts), or a local evidence store, the sidecar's
// embedded default, which keeps the same `v1/...` keys as plain files with no
// version, checksum or lock metadata: that one is verified as "not WORM".
import { constants, createReadStream } from 'node:fs';
import { access, readdir, readFile, stat } from 'node:fs/promises';
import { basename, dirname, join, relative, sep } from 'node:path';
import { createInterface } from 'node:readline';
import { type BucketLock, type StoredObject, sha256Hex } from '@veil/core';
import type { z } from 'zod';
import { CliError } from '../command.ts';
import { fsReason, isMissing } from '../fserror.ts';
import { printable } from '../printable.ts';
import { mapConcurrently } from './concurrently.ts';
import {
  type BucketInfo,
  bucketFile,
  bucketInfoSchema,
  indexFile,
  isRefused,
  maxEvidenceBytes,
  type ObjectMeta,
  objectMetaSchema,
} from './store.ts';

/** Files read at once: well under any limit of open files, enough to keep a disk busy. */
const readConcurrency = 32;

export type EvidenceSet = {
  kind: 'pulled' | 'local';
  /** The directory the evidence was read from. */
  dir: string;
  /** Null for a local store. */
  bucket: BucketInfo | null;
  bucketLock: BucketLock | 'local';
  /** Object versions and delete markers, each key's versions oldest first. */
  objects: StoredObject[];
  /** Versions of evidence keys a pull refused as too large to be evidence: among `objects`, without bytes. */
  refused: ObjectMeta[];
};

export async function loadEvidence(dir: string): Promise<EvidenceSet> {
  await readableDirectory(dir);
  if ((await entryAt(join(dir, bucketFile))) === 'file') return loadPulled(dir);
  if ((await entryAt(join(dir, 'v1'))) === 'directory') return loadLocal(dir);
  // The `v1` folder itself, named directly.
  if (basename(dir) === 'v1') return loadLocal(dirname(dir));
  throw new CliError(
    `${dir} is neither a pulled evidence directory (no ${bucketFile}) nor a local evidence store (no v1/)`,
  );
}

async function loadPulled(dir: string): Promise<EvidenceSet> {
  const bucket = parseFile(dir, bucketFile, bucketInfoSchema, await readText(dir, bucketFile));
  const metas: ObjectMeta[] = [];
  await readIndex(dir, indexFile, (meta) => metas.push(meta)).catch((error: unknown) => {
    if (!isMissing(error)) throw error;
    throw new CliError(`${dir} holds an unfinished pull (no ${indexFile}): run veil evidence pull again`);
  });
  // The index lists each key newest first; the verifier takes the first of equal times as the original.
  const objects = await mapConcurrently(metas.reverse(), readConcurrency, (meta) => storedObject(dir, meta));
  const refused = metas.filter(isRefused);
  const lock = bucket.objectLock;
  return {
    kind: 'pulled',
    dir,
    bucket,
    bucketLock: {
      enabled: lock.enabled,
      ...(lock.mode ? { mode: lock.mode } : {}),
    },
    objects,
    refused,
  };
}

/**
 * Each line of an index a pull wrote in `dir`, in order, read a line at a time:
 * past about a million versions an index is larger than one string may be. A
 * missing index rejects with its ENOENT error, for the caller to word; any
 * other failure is a CliError naming the file (and the line it is about).
 */
export async function readIndex(dir: string, file: string, each: (meta: ObjectMeta) => void): Promise<void> {
  const input = createReadStream(join(dir, file), { encoding: 'utf8' });
  const lines = createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY });
  let number = 0;
  try {
    for await (const line of lines) {
      number += 1;
      if (line.trim() !== '') each(parseFile(dir, `${file} line ${number}`, objectMetaSchema, line));
    }
  } catch (error) {
    if (error instanceof CliError || isMissing(error)) throw error;
    throw new CliError(`${dir}: cannot read ${file}: ${fsReason(error)}`);
  } finally {
    lines.close();
    input.destroy();
  }
}

/** A file of the pull's own; an error other than its absence is told with its code. */
async function readText(dir: string, file: string): Promise<string> {
  try {
    return await readFile(join(dir, file), 'utf8');
  } catch (error) {
    if (isMissing(error)) throw error;
    throw new CliError(`${dir}: cannot read ${file}: ${fsReason(error)}`);
  }
}

async function storedObject(dir: string, meta: ObjectMeta): Promise<StoredObject> {
  if (isRefused(meta) && (meta.size === null || meta.size <= (maxEvidenceBytes(meta.key) ?? 0))) {
    // A pull saves an evidence key without its bytes only when it is too large: this one lost them here.
    throw damagedPull(dir, `${printable(meta.key)} version ${printable(meta.versionId)} has no bytes saved`);
  }
  const bytes = meta.file === null ? undefined : await pulledBytes(dir, meta.file, meta.sha256);
  const fullObject = meta.checksumType === null || meta.checksumType === 'FULL_OBJECT';
  return {
    key: meta.key,
    versionId: meta.versionId,
    isLatest: meta.isLatest,
    isDeleteMarker: meta.isDeleteMarker,
    ...(bytes ? { bytes } : {}),
    ...(meta.lastModified ? { lastModified: new Date(meta.lastModified) } : {}),
    ...(meta.checksumSHA256 && fullObject ? { checksumSha256: meta.checksumSHA256 } : {}),
    ...(meta.lockMode ? { lockMode: meta.lockMode } : {}),
    ...(meta.retainUntil ? { retainUntil: new Date(meta.retainUntil) } : {}),
  };
}

/**
 * The bytes of a pulled version, as the pull saved them. Bytes gone, or no
 * longer those the pull recorded the SHA-256 of, were damaged on this disk (a
 * power loss, a disk fault, an edit) after they left the bucket: they say
 * nothing about the bucket, so no verdict is given on them.
 */
async function pulledBytes(dir: string, file: string, sha256: string | null): Promise<Buffer> {
  let bytes: Buffer;
  try {
    bytes = await readFile(join(dir, file));
  } catch (error) {
    // Only a file gone is damage; any other failure (EMFILE, EIO, EISDIR …) is this machine's, and told as it is.
    if (isMissing(error)) throw damagedPull(dir, `${file} is missing`);
    throw new CliError(`${dir}: cannot read ${file}: ${fsReason(error)}`);
  }
  if (sha256 !== null && sha256Hex(bytes) !== sha256) {
    throw damagedPull(dir, `${file} no longer has the SHA-256 it was pulled with`);
  }
  return bytes;
}

function damagedPull(dir: string, problem: string): CliError {
  return new CliError(`${dir} holds a damaged pull (${problem}): run veil evidence pull again`);
}

async function loadLocal(root: string): Promise<EvidenceSet> {
  const files = await listFiles(join(root, 'v1'));
  const objects = await mapConcurrently(files, readConcurrency, (file) => localObject(root, file));
  return { kind: 'local', dir: root, bucket: null, bucketLock: 'local', objects, refused: [] };
}

async function localObject(root: string, file: string): Promise<StoredObject> {
  try {
    const [bytes, info] = await Promise.all([readFile(file), stat(file)]);
    return {
      key: relative(root, file).split(sep).join('/'),
      isLatest: true,
      isDeleteMarker: false,
      bytes,
      lastModified: info.mtime,
    };
  } catch (error) {
    throw new CliError(`${file}: ${fsReason(error)}`);
  }
}

/** Regular files under `dir`; symbolic links are not followed, so nothing outside is read. */
async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch((error: unknown) => {
    throw new CliError(`${dir}: ${fsReason(error)}`);
  });
  const nested = await Promise.all(
    entries.map(async (entry) => {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) return listFiles(path);
      return entry.isFile() ? [path] : [];
    }),
  );
  return nested.flat().sort();
}

function parseFile<S extends z.ZodType>(dir: string, what: string, schema: S, text: string): z.output<S> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new CliError(`${dir}: ${what} is not JSON`);
  }
  const result = schema.safeParse(value);
  if (!result.success) {
    const fields = [...new Set(result.error.issues.map((issue) => issue.path.join('.') || '(file)'))];
    throw new CliError(`${dir}: ${what} is not valid pull metadata (${fields.join(', ')})`);
  }
  return result.data;
}

/** A folder that cannot be read is not a missing one: the user is told which it is. */
async function readableDirectory(dir: string): Promise<void> {
  const entry = await entryAt(dir);
  if (entry === 'absent') throw new CliError(`${dir}: no such directory`);
  if (entry !== 'directory') throw new CliError(`${dir}: not a directory`);
  // stat needs no permission on the folder itself, reading what it holds does.
  await access(dir, constants.R_OK | constants.X_OK).catch((error: unknown) => {
    throw new CliError(`${dir}: ${fsReason(error)}`);
  });
}

/** Only ENOENT is absent; any other failure is reported, naming the path and its code. */
async function entryAt(path: string): Promise<'file' | 'directory' | 'other' | 'absent'> {
  try {
    const info = await stat(path);
    return info.isFile() ? 'file' : info.isDirectory() ? 'directory' : 'other';
  } catch (error) {
    if (isMissing(error)) return 'absent';
    throw new CliError(`${path}: ${fsReason(error)}`);
  }
}
