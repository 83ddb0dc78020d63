// Crash-safe file writes for the audit state: a reader after a crash sees the
// old content or the new, never a mix, and a write that returned survives.
import { link, open, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';

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
  await writeSynced(temp, data, mode);
  try {
    await link(temp, path);
  } finally {
    await unlink(temp);
  }
  await syncDir(dirname(path));
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
