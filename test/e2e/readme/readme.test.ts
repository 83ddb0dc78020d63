// README is the front door: its set-up example calls must work as written.
// This runs `veil dev` as a user would (default ports, in a fresh folder),
// then the README's curl and OpenAI SDK snippets and its approval walk-through
// under veil dev, verbatim but for the approval id.
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

test("README's veil dev approval walk-through runs as written", async () => {
  // The README shows an example id; the run substitutes the one veil dev gave.
  const shown = 'local/ea-5c1f0e9a2b7d';
  const veilCommand = `"${process.execPath}" "${veil}"`;
  const sh = async (snippet: string, env: Record<string, string> = {}) =>
    (
      await run('bash', ['-euo', 'pipefail', '-c', snippet.replaceAll('npx veil', veilCommand)], {
        cwd: dir,
        env: { ...process.env, ...env },
      })
    ).stdout;

  const held = JSON.parse(await sh(block('sh', "-H 'x-veil-operation: export'"))) as {
    approval: { id: string; status: string };
  };
  assert.equal(held.approval.status, 'Pending');
  const id = held.approval.id;
  assert.match(id, /^local\/ea-[0-9a-f]{12}$/);
  const name = id.split('/')[1] ?? '';

  const decided = await sh(block('sh', 'approvals approve local/').replaceAll(shown, id));
  assert.match(decided, new RegExp(`^${name} +Pending +alice +demo +1 +0/1 `, 'm'));
  assert.match(decided, /^Needs: {6}1 distinct approver\(s\) from ml-approvers; /m);
  assert.match(decided, new RegExp(`^Approved ${id} as bob at `, 'm'));
  assert.match(decided, /^Phase: Approved \(1 of 1 approvals\)\.$/m);

  const retried = await sh(block('sh', "-H 'x-veil-approval: ").replaceAll(shown, id), {
    VEIL_TOKEN: await token(),
  });
  const body = JSON.parse(retried) as { data: { embedding: number[] }[] };
  assert.ok((body.data[0]?.embedding.length ?? 0) > 0, retried);
});

test('the recorded evidence verifies after veil dev stops', async () => {
  dev.kill('SIGINT');
  await new Promise((resolve) => dev.once('exit', resolve));
  const { stdout } = await run(process.execPath, [veil, 'evidence', 'verify', '.veil/audit'], { cwd: dir });
  // Four requests (two calls, the held one and its retry), plus the approval's own events.
  const verified = /1 streams, \d+ batches, (\d+) records verified, 0 gaps/.exec(stdout);
  assert.ok(verified, stdout);
  assert.ok(Number(verified[1]) >= 4, stdout);
  assert.doesNotMatch(stdout, /INVALID/);
});
