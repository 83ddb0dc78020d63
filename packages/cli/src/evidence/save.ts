// How a pull puts files on disk: whole or not at all, only inside the pull's
// own directory, and with every failure named by the file it was for.
import { type FileHandle, mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { CliError } from '../command.ts';
import { fsReason, isMissing } from '../fserror.ts';
import { indexFile, type ObjectMeta } from './store.ts';

export type Sync = 'none' | 'bytes' | 'all';

/**
 * Written under a temporary name and renamed: a file under its final name is
 * always whole. `sync: 'bytes'` syncs the bytes before the rename, so that a
 * power loss cannot leave the name on an empty file; `'all'` also syncs the
 * directory, for a file whose mere presence says something. `file` is
 * relative to `out`.
 */
export async function writeAtomic(
  out: string,
  file: string,
  data: string | Uint8Array,
  { sync = 'none' }: { sync?: Sync } = {},
): Promise<void> {
  await writeAtomicWith(out, file, (handle) => handle.writeFile(data), sync);
}

/** Text gathered before each write of the index: few writes, never the whole index in one string. */
const indexChunkChars = 1 << 20;

/**
 * The index, a line per version, written a chunk at a time: past about a
 * million versions it is larger than one string may be. Synced with its
 * directory, since its presence says the pull is finished.
 */
export async function writeIndex(out: string, metas: Iterable<ObjectMeta>): Promise<void> {
  await writeAtomicWith(
    out,
    indexFile,
    async (handle) => {
      let chunk = '';
      for (const meta of metas) {
        chunk += `${JSON.stringify(meta)}\n`;
        if (chunk.length < indexChunkChars) continue;
        await handle.writeFile(chunk);
        chunk = '';
      }
      await handle.writeFile(chunk);
    },
    'all',
  );
}

/** Removes a file of the pull's; one already gone is no failure. */
export async function removeSaved(out: string, file: string): Promise<void> {
  const path = join(out, file);
  try {
    await rm(path, { force: true });
  } catch (error) {
    throw new CliError(`cannot remove ${path}: ${fsReason(error)}`);
  }
}

async function writeAtomicWith(
  out: string,
  file: string,
  write: (handle: FileHandle) => Promise<void>,
  sync: Sync,
): Promise<void> {
  const path = join(out, file);
  // A fixed name: a pull resumed after a crash overwrites what the crash left.
  const partial = `${path}.partial`;
  try {
    const handle = await openBelow(out, file, partial);
    try {
      await write(handle);
      if (sync !== 'none') await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(partial, path);
  } catch (error) {
    throw new CliError(`cannot write ${path}: ${fsReason(error)}`);
  }
  if (sync === 'all') await syncDir(dirname(path));
}

/**
 * Opens `partial` for writing, creating the folders between `out` and it when
 * missing, but never `out` itself: a pull that failed may have had `out`
 * removed (a temporary copy), and a write still under way must not bring it back.
 */
async function openBelow(out: string, file: string, partial: string): Promise<FileHandle> {
  try {
    return await open(partial, 'w');
  } catch (error) {
    if (!isMissing(error)) throw error;
  }
  let dir = out;
  for (const segment of dirname(file).split('/')) {
    if (segment === '.') continue;
    dir = join(dir, segment);
    await mkdir(dir).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'EEXIST') throw error;
    });
  }
  return open(partial, 'w');
}

/** Syncs each directory on the way from `out` to a saved file, for the names in it. */
export async function syncDirs(out: string, metas: readonly ObjectMeta[]): Promise<void> {
  const dirs = new Set<string>();
  for (const meta of metas) {
    if (meta.file === null) continue;
    for (let dir = dirname(meta.file); dir !== '.' && !dirs.has(dir); dir = dirname(dir)) dirs.add(dir);
  }
  for (const dir of dirs) await syncDir(join(out, dir));
  await syncDir(out);
}

async function syncDir(dir: string): Promise<void> {
  try {
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (error) {
    throw new CliError(`cannot write ${dir}: ${fsReason(error)}`);
  }
}
