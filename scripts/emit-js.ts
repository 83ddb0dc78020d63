// Turns workspace packages into plain JavaScript for a container image: a .js
// beside every .ts of their src/, relative imports and the package's exports
// pointed at it. Node then never loads its TypeScript stripper, which costs a
// process about 30 MiB of resident memory for as long as it runs. Types are
// replaced by blanks, so line and column numbers in stack traces still match
// the sources.
//   node scripts/emit-js.ts packages/core packages/sidecar
import { cp, mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { stripTypeScriptTypes } from 'node:module';
import { join } from 'node:path';

// `from './x.ts'`, `import('./x.ts')` and `import './x.ts'`: only relative
// specifiers, as a package name never ends in .ts.
const relativeTsSpecifier = /(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(['"])(\.{1,2}\/[^'"]*)\.ts\2/g;

export function toJavaScript(source: string): string {
  return stripTypeScriptTypes(source).replace(relativeTsSpecifier, '$1$2$3.js$2');
}

async function emitDir(dir: string): Promise<number> {
  let files = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile() || !entry.name.endsWith('.ts')) continue;
    const path = join(entry.parentPath, entry.name);
    await writeFile(path.replace(/\.ts$/, '.js'), toJavaScript(await readFile(path, 'utf8')));
    files += 1;
  }
  return files;
}

async function pointExportsAtJs(packageDir: string): Promise<void> {
  const file = join(packageDir, 'package.json');
  const manifest = JSON.parse(await readFile(file, 'utf8')) as { exports?: Record<string, string> };
  const exports = Object.entries(manifest.exports ?? {});
  manifest.exports = Object.fromEntries(
    exports.map(([key, target]) => [key, target.replace(/\.ts$/, '.js')]),
  );
  await writeFile(file, `${JSON.stringify(manifest, null, 2)}\n`);
}

/** Emits a workspace package's src/ as JavaScript in place; returns how many files. */
export async function emitPackage(packageDir: string): Promise<number> {
  const files = await emitDir(join(packageDir, 'src'));
  await pointExportsAtJs(packageDir);
  return files;
}

/**
 * A copy of workspace packages as an image holds them, under dest: each one's
 * package.json and src/ (tests left out), emitted as above, with dest/node_modules
 * linking the repository's dependencies and `@veil/<name>` pointing at the
 * copies, so a plain `node` runs them without ever loading TypeScript.
 */
export async function emitWorkspaceCopy(
  repoRoot: string,
  dest: string,
  names: readonly string[],
): Promise<void> {
  for (const name of names) {
    const from = join(repoRoot, 'packages', name);
    await cp(join(from, 'package.json'), join(dest, 'packages', name, 'package.json'));
    await cp(join(from, 'src'), join(dest, 'packages', name, 'src'), { recursive: true });
    await emitPackage(join(dest, 'packages', name));
  }
  await mkdir(join(dest, 'node_modules', '@veil'), { recursive: true });
  for (const entry of await readdir(join(repoRoot, 'node_modules'))) {
    if (entry !== '@veil')
      await symlink(join(repoRoot, 'node_modules', entry), join(dest, 'node_modules', entry));
  }
  for (const name of names) {
    await symlink(join(dest, 'packages', name), join(dest, 'node_modules', '@veil', name));
  }
}

if (import.meta.main) {
  for (const packageDir of process.argv.slice(2)) {
    console.log(`${packageDir}: ${await emitPackage(packageDir)} files`);
  }
}
