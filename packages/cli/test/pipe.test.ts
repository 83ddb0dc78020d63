// `veil … | head`: a reader that leaves early costs the output, never a stack
// trace or the exit code that says what the command found.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { batchKey } from '@veil/core';
import { type BuiltStream, buildStream, writeLocalStore } from './support/evidence.ts';

const veil = join(import.meta.dirname, '..', 'src', 'main.ts');

let root: string;
let built: BuiltStream;
let store: string;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'veil-cli-pipe-'));
  built = buildStream({ batches: [[0, 1, 2], [3]] });
  store = join(root, 'store');
  await writeLocalStore(store, built.objects);
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

/**
 * Runs veil with its stdout on a pipe its reader closes before veil writes a
 * line: closed as the child starts, long before it has loaded its modules.
 * `nodeOptions` go to node before veil's own arguments.
 */
async function run(
  args: string[],
  nodeOptions: string[] = [],
): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [...nodeOptions, veil, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, VEIL_DEBUG: '' },
  });
  child.stdout?.destroy();
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stderr };
}

function assertQuiet(stderr: string): void {
  assert.doesNotMatch(stderr, /EPIPE|^\s+at /m, stderr);
}

test('verify into a closed pipe exits 0 for valid evidence, quietly', async () => {
  const { code, stderr } = await run(['evidence', 'verify', store]);
  assertQuiet(stderr);
  assert.equal(code, 0);
});

test('verify into a closed pipe still exits 1 when it finds the evidence INVALID', async () => {
  const copy = join(root, 'tampered');
  await writeLocalStore(copy, built.objects);
  const file = join(copy, ...batchKey(built.prefix, 2).split('/'));
  const bytes = await readFile(file);
  bytes[30] = (bytes[30] ?? 0) ^ 0x01;
  await writeFile(file, bytes);
  const { code, stderr } = await run(['evidence', 'verify', copy]);
  assertQuiet(stderr);
  assert.equal(code, 1);
});

test('sessions show into a closed pipe exits 0, quietly', async () => {
  const { code, stderr } = await run(['sessions', 'show', `${built.stream}:1`, '--dir', store]);
  assertQuiet(stderr);
  assert.equal(code, 0);
});

/**
 * Loaded before veil: its stdout fails every write as a full disk does, with
 * this platform's ENOSPC, so that no device such as /dev/full is needed.
 */
const fullOutput = `data:text/javascript,${encodeURIComponent(`
  import { getSystemErrorMap } from 'node:util';
  const [errno] = [...getSystemErrorMap()].find(([, [name]]) => name === 'ENOSPC');
  process.stdout._write = (_chunk, _encoding, done) =>
    done(Object.assign(new Error('ENOSPC: no space left on device, write'), { errno, code: 'ENOSPC', syscall: 'write' }));
`)}`;

test('an output that cannot be written for another reason is one line and exit 1', async () => {
  const { code, stderr } = await run(['evidence', 'verify', store], ['--import', fullOutput]);
  assert.equal(stderr, 'veil: cannot write the output: no space left on device (ENOSPC)\n');
  assert.equal(code, 1);
});
