// The entry point's stop: what the process still holds when SIGTERM comes, the
// spans of its last requests and the audit stream of a start under way, is
// let go of properly before it exits.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { FOLLOW_FILE } from '../src/approvals/follow.ts';
import { eventually, verifyDir } from './audit/helpers.ts';
import { startCollectorStandIn, startEntryPoint, tracesTo } from './fixtures/entrypoint.ts';
import { call } from './fixtures/sidecar.ts';

test('SIGTERM right after a request: its spans reach the collector before the process exits', {
  timeout: 60_000,
}, async () => {
  const collector = await startCollectorStandIn();
  // Batches go out only when the process lets go of them: never on the schedule.
  const sidecar = await startEntryPoint({ ...tracesTo(collector), OTEL_BSP_SCHEDULE_DELAY: '600000' });
  try {
    const { url } = await sidecar.serving;
    const refused = await call(`${url}/v1/embeddings`, { model: 'm', input: 'x' });
    assert.equal(refused.status, 401);
    sidecar.child.kill('SIGTERM');
    assert.deepEqual(await sidecar.exited, { code: 0, signal: null }, sidecar.output());
    assert.ok(
      collector.spans().some((span) => span.name === 'veil.auth'),
      `spans received: ${collector.spans().map((span) => span.name)}`,
    );
  } finally {
    await sidecar.close();
    await collector.close();
  }
});

/**
 * The entry point with its start held once its audit stream is open: the list
 * of approvals followed is read then, from a named pipe the test writes to.
 * Opening the pipe to write returns once the sidecar opened it to read.
 */
async function startHeld(env: Record<string, string> = {}) {
  let followFile = '';
  const sidecar = await startEntryPoint(
    { VEIL_APPROVALS_URL: 'http://127.0.0.1:1', ...env },
    async (stateDir) => {
      followFile = join(stateDir, FOLLOW_FILE);
      execFileSync('mkfifo', [followFile]);
      await writeFile(join(stateDir, 'token'), 'unused');
      return { VEIL_CONTROLLER_TOKEN_FILE: join(stateDir, 'token') };
    },
  );
  return { sidecar, held: () => open(followFile, 'w') };
}

test('SIGTERM during the start: the start finishes, then the sidecar closes its audit stream and exits 0', {
  timeout: 60_000,
}, async () => {
  const { sidecar, held } = await startHeld();
  try {
    const pipe = await held();
    sidecar.child.kill('SIGTERM');
    let exited = false;
    void sidecar.exited.then(() => {
      exited = true;
    });
    await eventually('the signal to be handled', () => exited || sidecar.output().includes('SIGTERM'));
    // No reader left if the signal killed the process.
    await pipe.writeFile('{"approvals":[]}').catch(() => undefined);
    await pipe.close();
    assert.deepEqual(await sidecar.exited, { code: 0, signal: null }, sidecar.output());
    const result = await verifyDir(sidecar.evidence);
    assert.equal(result.streams.length, 1);
    assert.equal(result.streams[0]?.closed, true, 'the audit stream is closed');
  } finally {
    await sidecar.close();
  }
});

test('SIGTERM during a start that does not finish: the close deadline runs from the signal', {
  timeout: 60_000,
}, async () => {
  // Deadline: twice the 2 s drain, the 1 s close grace and the 3 s margin.
  const { sidecar, held } = await startHeld({ VEIL_AUDIT_CLOSE_GRACE_SECONDS: '1' });
  try {
    const pipe = await held();
    try {
      sidecar.child.kill('SIGTERM');
      await eventually('the deadline', () => sidecar.output().includes('not closed after 8000 ms, exiting'));
    } finally {
      // The start's read holds a thread the exit waits for: let it go.
      await pipe.writeFile('{"approvals":[]}').catch(() => undefined);
      await pipe.close();
    }
    assert.deepEqual(await sidecar.exited, { code: 1, signal: null }, sidecar.output());
  } finally {
    await sidecar.close();
  }
});
