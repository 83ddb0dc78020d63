// README is the front door: its set-up example calls must work as written.
// This runs `veil dev` as a user would (default ports, in a fresh folder),
// then the README's curl and OpenAI SDK snippets, verbatim.
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = join(import.meta.dirname, '..', '..', '..');
const veil = join(root, 'node_modules', '.bin', 'veil');
let dir: string;
let dev: ChildProcess;
let readme: string;

function block(language: string, containing: string): string {
  const blocks = [...readme.matchAll(new RegExp('```' + language + '\\n([\\s\\S]*?)```', 'g'))].map(
    (m) => m[1] ?? '',
  );
  const found = blocks.find((b) => b.includes(containing));
  assert.ok(found, `README has a ${language} block with ${containing}`);
  return found;
}

before(async () => {
  readme = await readFile(join(root, 'README.md'), 'utf8');
  dir = await mkdtemp(join(tmpdir(), 'veil-readme-'));
  dev = spawn(process.execPath, [veil, 'dev'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  await new Promise<void>((resolve, reject) => {
    dev.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('Stop:')) resolve();
    });
    dev.stderr?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    dev.once('exit', (code) => reject(new Error(`veil dev exited ${code}: ${output}`)));
  });
});

after(async () => {
  if (dev && dev.exitCode === null) {
    dev.kill('SIGINT');
    await new Promise((resolve) => dev.once('exit', resolve));
  }
  await rm(dir, { recursive: true, force: true });
});

async function token(): Promise<string> {
  const { stdout } = await run(
    process.execPath,
    [veil, 'dev', 'token', '--sub', 'alice', '--groups', 'ml-readers'],
    { cwd: dir },
  );
  return stdout.trim();
}

test("README's curl call returns an embedding through veil dev", async () => {
  const snippet = block('sh', 'curl').replace(/^export VEIL_TOKEN=.*$/m, '');
  const { stdout } = await run('bash', ['-c', snippet], {
    cwd: dir,
    env: { ...process.env, VEIL_TOKEN: await token() },
  });
  const body = JSON.parse(stdout) as { data: { embedding: number[] }[] };
  assert.equal(body.data.length, 1);
  assert.ok((body.data[0]?.embedding.length ?? 0) > 0);
});

test("README's OpenAI SDK snippet runs unchanged", async () => {
  const snippet = block('js', 'new OpenAI');
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', snippet], {
    cwd: root,
    env: { ...process.env, VEIL_TOKEN: await token() },
  });
  assert.ok(Number(stdout.trim()) > 0, `printed a vector length, got ${stdout}`);
});

test('the recorded evidence verifies after veil dev stops', async () => {
  dev.kill('SIGINT');
  await new Promise((resolve) => dev.once('exit', resolve));
  const { stdout } = await run(process.execPath, [veil, 'evidence', 'verify', '.veil/audit'], { cwd: dir });
  assert.match(stdout, /1 streams, \d+ batches, 2 records verified, 0 gaps/);
  assert.doesNotMatch(stdout, /INVALID/);
});
