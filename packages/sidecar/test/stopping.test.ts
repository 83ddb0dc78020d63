// A stopping sidecar answers what it holds and closes its audit stream within
// the pod's grace period: a request held for approval (up to its hold timeout)
// or a model call that hangs must not keep the recorder from its own close.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sidecarConfigSchema } from '../src/config.ts';
import { startSidecar } from '../src/sidecar.ts';
import { startControllerStandIn } from './approvals/controller.ts';
import { eventually, verifyDir } from './audit/helpers.ts';
import {
  call,
  POD_UID,
  startBehindStallingModel,
  startSidecarFixture,
  startStallingServer,
} from './fixtures/sidecar.ts';

const body = { model: 'm', input: ['a', 'b'] };

describe('a stopping sidecar', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'veil-stopping-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('answers a request held for approval at once, 503 with its approval id, on record', {
    timeout: 30_000,
  }, async () => {
    const controller = await startControllerStandIn();
    const tokenFile = join(dir, 'token');
    await writeFile(tokenFile, controller.token);
    const fixture = await startSidecarFixture({
      policy: {
        approvals: {
          rules: [
            {
              name: 'reindex',
              when: { operation: { header: 'x-veil-operation', values: ['reindex'] } },
              approvers: { groups: ['ml-approvers'] },
              holdTimeoutSeconds: 600,
            },
          ],
        },
      },
      config: { approvalsUrl: controller.url, controllerTokenFile: tokenFile },
    }).catch(async (error) => {
      await controller.close();
      throw error;
    });
    try {
      const answer = call(`${fixture.url}/v1/embeddings`, body, {
        token: await fixture.token(),
        headers: { 'x-veil-operation': 'reindex' },
      });
      const id = await controller.nextOpened();
      await fixture.sidecar.close();
      const held = await answer;
      assert.equal(held.status, 503, held.text);
      assert.equal(held.headers['x-veil-approval'], id);
      assert.match(held.text, /stopping/);
      const record = fixture.records().at(-1);
      assert.deepEqual([record?.outcome, record?.status], ['held', 503]);
      assert.equal(record?.approval?.id, id);
      assert.equal(fixture.upstreamCalls.length, 0);
    } finally {
      await fixture.close();
      await controller.close();
    }
  });

  it('cuts off a model call still under way after the drain, answered 502 and on record', {
    timeout: 30_000,
  }, async () => {
    const stalling = await startStallingServer();
    const fixture = await startSidecarFixture({ upstream: stalling.url, upstreamTimeoutMs: 600_000 });
    try {
      const answer = call(`${fixture.url}/v1/embeddings`, body, { token: await fixture.token() });
      await eventually('the model to get the request', () => stalling.received() === 1);
      await fixture.sidecar.close();
      assert.equal((await answer).status, 502);
      const record = fixture.records().at(-1);
      assert.deepEqual([record?.outcome, record?.status], ['upstream_error', 502]);
    } finally {
      await fixture.close();
      await stalling.close();
    }
  });

  it('is not ready from the moment its close starts, while the admin port still answers', {
    timeout: 30_000,
  }, async () => {
    const stalling = await startStallingServer();
    const fixture = await startSidecarFixture({ upstream: stalling.url, upstreamTimeoutMs: 600_000 });
    try {
      assert.equal((await call(`${fixture.adminUrl}/readyz`)).status, 200);
      const answer = call(`${fixture.url}/v1/embeddings`, body, { token: await fixture.token() });
      await eventually('the model to get the request', () => stalling.received() === 1);
      // The model never answers: the close waits out the drain, its data port already shut.
      const closing = fixture.sidecar.close();
      const ready = await call(`${fixture.adminUrl}/readyz`);
      assert.equal(ready.status, 503, ready.text);
      assert.equal(JSON.parse(ready.text).reason, 'stopping');
      await closing;
      await answer;
    } finally {
      await fixture.close();
      await stalling.close();
    }
  });

  it('cuts off a model call whose caller hung up within the drain, and closes its audit stream', {
    timeout: 30_000,
  }, async () => {
    const { fixture, stalling, sendThenHangUp } = await startBehindStallingModel();
    try {
      for (const path of ['/v1/embeddings', '/v1/tokenize']) await sendThenHangUp(path, JSON.stringify(body));
      // The model never answers: only the drain can end its calls.
      await fixture.sidecar.close();
      assert.equal(fixture.sink.accepting(), false, 'the audit stream is closed');
      assert.deepEqual(
        fixture
          .records()
          .map((r) => r.route)
          .sort(),
        ['/v1/embeddings', '/v1/tokenize'],
      );
    } finally {
      await fixture.close();
      await stalling.close();
    }
  });

  it('closes the audit stream it opened when its start fails', async () => {
    const taken = createServer().listen(0, '127.0.0.1');
    await once(taken, 'listening');
    const { port } = taken.address() as { port: number };
    const evidence = join(dir, 'failed-start', 'evidence');
    try {
      const config = sidecarConfigSchema.parse({
        upstream: 'http://127.0.0.1:1',
        host: '127.0.0.1',
        proxyPort: port,
        adminHost: '127.0.0.1',
        adminPort: 0,
        stateDir: join(dir, 'failed-start', 'policy'),
        auditDir: evidence,
        spoolDir: join(dir, 'failed-start', 'spool'),
        pod: { namespace: 'test', name: 'embed-0', uid: POD_UID },
      });
      await assert.rejects(startSidecar(config, { log: () => undefined }), /EADDRINUSE/);
    } finally {
      taken.close();
    }
    const result = await verifyDir(evidence);
    assert.deepEqual(
      result.findings.map((f) => `${f.level} ${f.code}`),
      ['WARN not-worm'],
    );
  });
});
