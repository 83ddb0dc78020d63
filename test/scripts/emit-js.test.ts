import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { emitWorkspaceCopy, toJavaScript } from '../../scripts/emit-js.ts';

const repoRoot = join(import.meta.dirname, '..', '..');

test('types become blanks, so every line keeps its number', () => {
  const source = 'const a: number = 1;\ninterface X {\n  y: string;\n}\nexport const b = a as number;\n';
  const emitted = toJavaScript(source);
  assert.equal(emitted.split('\n').length, source.split('\n').length);
  assert.doesNotMatch(emitted, /number|interface/);
  assert.match(emitted, /^const a\s*= 1;/);
});

test('relative .ts specifiers become .js; package names and other strings stay', () => {
  const emitted = toJavaScript(
    [
      "import { a } from './a.ts';",
      "export { b } from '../dir/b.ts';",
      "import './side-effect.ts';",
      "const c = await import('./c.ts');",
      "import { d } from 'some-package';",
      "const text = 'x.ts';",
    ].join('\n'),
  );
  assert.match(emitted, /from '\.\/a\.js'/);
  assert.match(emitted, /from '\.\.\/dir\/b\.js'/);
  assert.match(emitted, /import '\.\/side-effect\.js'/);
  assert.match(emitted, /import\('\.\/c\.js'\)/);
  assert.match(emitted, /from 'some-package'/);
  assert.match(emitted, /'x\.ts'/);
});

test('type-only imports leave nothing to resolve', () => {
  const emitted = toJavaScript(
    "import type { T } from './types.ts';\nexport const t: T | undefined = undefined;\n",
  );
  assert.doesNotMatch(emitted, /types/);
});

// The sidecar as its image holds it: core and sidecar emitted in a copy, next to
// the repository's dependencies, run by a node that cannot load TypeScript at all.
test('the emitted sidecar loads every module, the lazy S3 store too, without TypeScript', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'veil-emit-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  await emitWorkspaceCopy(repoRoot, root, ['core', 'sidecar']);
  const node = (args: string[]) =>
    spawnSync(process.execPath, ['--no-experimental-strip-types', ...args], { cwd: root, encoding: 'utf8' });

  const loaded = node([
    '--input-type=module',
    '-e',
    "await import('@veil/sidecar'); await import('./packages/sidecar/src/audit/s3store.js');",
  ]);
  assert.equal(loaded.status, 0, loaded.stderr);
  // main.js reads its configuration once everything is imported: without one it says so.
  const main = node(['packages/sidecar/src/main.js']);
  assert.equal(main.status, 1);
  assert.match(main.stderr, /invalid sidecar configuration/);
});
