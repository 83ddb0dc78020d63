// `veil approvals …` through a kubeconfig whose API server does not answer:
// the user reads which server and why, and no "refused" for what nobody refused.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { loadKubeConfig } from '../src/approvals/client.ts';
import { CliError } from '../src/command.ts';
import { type ApprovalsIo, runApprovalsDecide, runApprovalsList } from '../src/commands/approvals.ts';

let root: string;
let kubeconfig: string;
let server: string;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'veil-cli-approvals-'));
  server = `https://127.0.0.1:${await freePort()}`;
  kubeconfig = join(root, 'kubeconfig.yaml');
  await writeFile(
    kubeconfig,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'c', cluster: { server, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'u', user: { token: 'not-checked' } }],
      contexts: [{ name: 'x', context: { cluster: 'c', user: 'u', namespace: 'ml' } }],
      'current-context': 'x',
    }),
  );
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

const io: ApprovalsIo = { out: () => assert.fail('nothing to print'), kubeConfig: loadKubeConfig };

async function failure(promise: Promise<unknown>): Promise<CliError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof CliError, String(error));
    return error;
  }
  return assert.fail('expected a failure');
}

test('list names the API server it cannot reach and the socket error', async () => {
  const error = await failure(runApprovalsList(['--kubeconfig', kubeconfig], io));
  assert.equal(error.message, `cannot reach ${server} (ECONNREFUSED)`);
  assert.equal(error.exitCode, 1);
});

test('a decision the API server never received is not reported as refused', async () => {
  const error = await failure(
    runApprovalsDecide('approve', ['ea-1', '--reason', 'planned', '--kubeconfig', kubeconfig], io),
  );
  assert.equal(error.message, `approvals approve: cannot reach ${server} (ECONNREFUSED)`);
  assert.equal(error.exitCode, 1);
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const listener = createServer();
    listener.once('error', reject);
    listener.listen(0, '127.0.0.1', () => {
      const { port } = listener.address() as { port: number };
      listener.close(() => resolve(port));
    });
  });
}

test('an ID naming one namespace and -n another is refused before anything is sent', async () => {
  for (const decision of ['approve', 'deny'] as const) {
    const error = await failure(
      runApprovalsDecide(
        decision,
        ['ns1/ea-x', '-n', 'ns2', '--reason', 'planned', '--kubeconfig', kubeconfig],
        io,
      ),
    );
    assert.equal(
      error.message,
      `approvals ${decision}: "ns1/ea-x" names namespace ns1 but -n names ns2: give the namespace once`,
    );
  }
});
