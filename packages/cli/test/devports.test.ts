// `veil dev` started while another holds its port: the user reads which port and
// which flag moves it, not a stack trace.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { type RunningDev, startDev } from '../src/commands/dev.ts';

const run = promisify(execFile);
const veil = join(import.meta.dirname, '..', 'src', 'main.ts');

let root: string;
let first: RunningDev;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'veil-dev-ports-'));
  first = await startDev({
    port: 0,
    adminPort: 0,
    issuerPort: 0,
    approvalsPort: 0,
    stateDir: join(root, 'first'),
  });
});

after(async () => {
  await first?.close();
  await rm(root, { recursive: true, force: true });
});

test('a second veil dev on a busy port exits 1 naming the port and its flag', async () => {
  const busy = new URL(first.info.url).port;
  const second = run(
    process.execPath,
    [veil, 'dev', '--port', busy, '--admin-port', '0', '--issuer-port', '0', '--approvals-port', '0'],
    // Killed rather than left waiting for Ctrl-C, should it start after all.
    { cwd: root, env: { ...process.env, VEIL_DEBUG: '' }, timeout: 60_000 },
  );
  await assert.rejects(second, (error: { code?: number; stderr?: string }) => {
    assert.equal(error.code, 1);
    const stderr = error.stderr ?? '';
    assert.ok(
      stderr.includes(
        `veil: dev: port ${busy} is already in use (another veil dev?); stop what listens there or choose another port with --port\n`,
      ),
      stderr,
    );
    assert.doesNotMatch(stderr, /^\s+at /m, 'no stack trace');
    return true;
  });
});

test('a second veil dev on the same state folder exits 1: two would share one audit spool', async () => {
  const second = run(
    process.execPath,
    [
      veil,
      'dev',
      '--port',
      '0',
      '--admin-port',
      '0',
      '--issuer-port',
      '0',
      '--approvals-port',
      '0',
      '--state',
      first.stateDir,
    ],
    { cwd: root, env: { ...process.env, VEIL_DEBUG: '' }, timeout: 60_000 },
  );
  await assert.rejects(second, (error: { code?: number; stderr?: string }) => {
    assert.equal(error.code, 1);
    assert.ok(
      (error.stderr ?? '').includes(
        `veil: dev: ${first.stateDir} is in use by another veil dev; stop it, or give this one a folder of its own with --state\n`,
      ),
      error.stderr,
    );
    return true;
  });
  // The first one still records.
  const answer = await fetch(`${first.info.url}/v1/embeddings`, {
    method: 'POST',
    headers: { authorization: `Bearer ${first.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'demo', input: 'still here' }),
  });
  assert.equal(answer.status, 200);
});
