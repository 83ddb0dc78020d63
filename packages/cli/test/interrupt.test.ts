// Ctrl-C while verify or report pulls s3://…: the temporary copy of the
// evidence goes with the process, which exits as a death by that signal reads.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

const veil = join(import.meta.dirname, '..', 'src', 'main.ts');

let root: string;
let silent: Server;
const sockets: Socket[] = [];

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'veil-cli-interrupt-'));
  // Accepts each connection and never answers: the pull is under way, and stays so.
  silent = createServer((socket) => sockets.push(socket));
  silent.listen(0, '127.0.0.1');
  await once(silent, 'listening');
});

after(async () => {
  for (const socket of sockets) socket.destroy();
  silent.close();
  await rm(root, { recursive: true, force: true });
});

async function interrupted(
  name: string,
  args: string[],
  signal: NodeJS.Signals,
): Promise<{ code: number | null; left: string[]; stderr: string }> {
  const temp = join(root, name);
  await mkdir(temp);
  const address = silent.address() as { port: number };
  const child = spawn(
    process.execPath,
    [veil, ...args, '--endpoint', `http://127.0.0.1:${address.port}`, '--path-style'],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: {
        ...process.env,
        TMPDIR: temp,
        AWS_ACCESS_KEY_ID: 'interrupt-test',
        AWS_SECRET_ACCESS_KEY: 'interrupt-test',
        AWS_REGION: 'us-east-1',
        VEIL_DEBUG: '',
      },
    },
  );
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  await once(silent, 'connection');
  assert.equal((await readdir(temp)).length, 1, 'the pull has its temporary directory');
  child.kill(signal);
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, left: await readdir(temp), stderr };
}

test('Ctrl-C during verify s3://… removes the temporary pull and exits 130', async () => {
  const { code, left, stderr } = await interrupted(
    'verify',
    ['evidence', 'verify', 's3://evidence/v1/'],
    'SIGINT',
  );
  assert.deepEqual(left, []);
  assert.equal(code, 130, stderr);
});

test('SIGTERM during report s3://… removes the temporary pull and exits 143', async () => {
  const html = join(root, 'report.html');
  const { code, left, stderr } = await interrupted(
    'report',
    ['evidence', 'report', 's3://evidence/v1/', '--html', html],
    'SIGTERM',
  );
  assert.deepEqual(left, []);
  assert.equal(code, 143, stderr);
});
