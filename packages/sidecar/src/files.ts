// Crash-safe file writes (the audit spool and state, the last good policy): a
// reader after a crash sees the old content or the new, never a mix, and a
// write that returned survives.
import { link, mkdir, open, rename, unlink } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

/** The temporary name `writeFileAtomic` writes to first; left behind only by a crash. */
export function tempPathOf(path: string): string {
  return `${path}.tmp`;
}

/** Writes a temporary file, syncs it, renames it over `path`, syncs the directory. */
export async function writeFileAtomic(path: string, data: Uint8Array | string, mode = 0o600): Promise<void> {
  const temp = tempPathOf(path);
  await writeSynced(temp, data, mode);
  await rename(temp, path);
  await syncDir(dirname(path));
}

/**
 * Like `writeFileAtomic`, but never replaces: a `path` that already exists
 * makes it throw EEXIST, as S3's If-None-Match does.
 */
export async function createFileAtomic(path: string, data: Uint8Array, mode = 0o644): Promise<void> {
  const temp = tempPathOf(path);
  // A crash between the link and the unlink leaves the temporary name as a second
  // name of the file published: written through, it would rewrite that file.
  await unlink(temp).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT') throw error;
  });
  await writeSynced(temp, data, mode);
  try {
    await link(temp, path);
  } finally {
    await unlink(temp);
  }
  await syncDir(dirname(path));
}

/**
 * `mkdir -p` whose new names survive a crash: a directory's name is in its
 * parent, so each directory that holds one it created is synced.
 */
export async function mkdirDurable(path: string, mode?: number): Promise<void> {
  const target = resolve(path);
  const first = await mkdir(target, { recursive: true, ...(mode === undefined ? {} : { mode }) });
  if (first === undefined) return;
  const top = dirname(first);
  for (let dir = dirname(target); ; dir = dirname(dir)) {
    await syncDir(dir);
    if (dir === top || dir === dirname(dir)) return;
  }
}

export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function writeSynced(path: string, data: Uint8Array | string, mode: number): Promise<void> {
  const file = await open(path, 'w', mode);
  try {
    await file.writeFile(data);
    await file.sync();
  } finally {
    await file.close();
  }
}
