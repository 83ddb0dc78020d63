// The proxies under test (the sidecars and the bare Node proxy) run as the
// sidecar image runs: from JavaScript emitted at build time, not from the
// TypeScript sources. Node's type stripper, once loaded, stays for the life of
// a process (about 30 MiB of resident memory and a few MiB of heap the
// collector walks), so sources run as they are would set memory and GC figures
// that no deployed sidecar has. Core and the sidecar are copied and emitted as
// the image's build stage does; the bench's own scripts are emitted beside them.
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { emitWorkspaceCopy, toJavaScript } from '../../scripts/emit-js.ts';

const repoRoot = join(import.meta.dirname, '..', '..');

/** Node flags for an emitted child: TypeScript stays unloadable, so a stray .ts import fails loudly. */
export const EMITTED_NODE_FLAGS = ['--no-experimental-strip-types'];

/** Emits core, the sidecar and the bench's scripts under dir; returns the emitted bench directory. */
export async function emitForBench(dir: string): Promise<string> {
  const root = join(dir, 'emitted');
  await emitWorkspaceCopy(repoRoot, root, ['core', 'sidecar']);
  const bench = join(root, 'test', 'bench');
  await mkdir(bench, { recursive: true });
  for (const name of await readdir(import.meta.dirname)) {
    if (!name.endsWith('.ts')) continue;
    const source = await readFile(join(import.meta.dirname, name), 'utf8');
    await writeFile(join(bench, name.replace(/\.ts$/, '.js')), toJavaScript(source));
  }
  return bench;
}
