// Calls to the controller read its CA bundle per call: a missing file fails that
// call closed (never the start, never the system roots), and a file that appears
// later, or rotates, is used from the next call.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ControllerUnavailableError, controllerApprovalsClient } from '../src/approvals/client.ts';
import { ControllerAgent, ControllerCaError } from '../src/controllerca.ts';

const pem = (body: string) => `-----BEGIN CERTIFICATE-----\n${body}\n-----END CERTIFICATE-----\n`;
let dir: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'veil-controller-ca-'));
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('a missing or empty CA file fails the call, and a file that appears later is used', async () => {
  const caFile = join(dir, 'ca.crt');
  const agent = new ControllerAgent({ caFile, connectTimeoutMs: 1000 });
  try {
    await assert.rejects(agent.get(), ControllerCaError);
    await writeFile(caFile, '');
    await assert.rejects(agent.get(), /holds no certificate/);
    await writeFile(caFile, pem('ONE'));
    const first = await agent.get();
    assert.equal(await agent.get(), first, 'the same bundle keeps the pool');
    await writeFile(caFile, pem('TWO'));
    assert.notEqual(await agent.get(), first, 'a rotated bundle makes a new pool');
  } finally {
    await agent.close();
  }
});

test('without a CA file the approvals client starts, and its calls fail closed', async () => {
  const caFile = join(dir, 'absent', 'ca.crt');
  const tokenFile = join(dir, 'token');
  await writeFile(tokenFile, 'a-token');
  const client = await controllerApprovalsClient({ url: 'https://127.0.0.1:1', tokenFile, caFile });
  await assert.rejects(
    client.open({} as Parameters<typeof client.open>[0]),
    (error: unknown) =>
      error instanceof ControllerUnavailableError && /CA bundle .* cannot be read/.test(error.message),
  );
  await client.close();
});
