// The start-up pull against a small local HTTP server standing in for the
// controller's pull endpoint (`GET /v1/policies/<namespace>/<name>`).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, beforeEach, describe, it } from 'node:test';
import { policyHash, policySpecSchema } from '@veil/core';
import { startPolicyPull } from '../../src/policy/pull.ts';
import { PolicyStore } from '../../src/policy/store.ts';
import {
  call,
  closedPortUrl,
  type SidecarFixture,
  startSidecarFixture,
  testPolicy,
} from '../fixtures/sidecar.ts';

const hashKey = randomBytes(32);
const fast = { baseMs: 1, capMs: 2 };
const TOKEN = 'projected-sa-token';

type Seen = { method: string; url: string; authorization: string | undefined };
type Handler = (request: IncomingMessage, response: ServerResponse) => void | Promise<void>;

/** The controller's pull endpoint as far as the sidecar can tell; answers as `handler` says. */
async function startPullStandIn(handler: Handler): Promise<{ url: string; seen: Seen[]; server: Server }> {
  const seen: Seen[] = [];
  const server = createServer((request, response) => {
    seen.push({
      method: request.method ?? '',
      url: request.url ?? '',
      authorization: request.headers.authorization,
    });
    void handler(request, response);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen, server };
}

function answer(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

const spec = (vectorsPerMinute: number) => ({ limits: { vectorsPerMinute } });

describe('policy pull', () => {
  let dir: string;
  let tokenFile: string;
  const cleanup: (() => Promise<unknown>)[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'veil-pull-'));
    tokenFile = join(dir, 'token');
    await writeFile(tokenFile, `${TOKEN}\n`);
  });
  afterEach(async () => {
    for (const step of cleanup.splice(0).reverse()) await step();
    await rm(dir, { recursive: true, force: true });
  });

  function newStore(): PolicyStore {
    const store = new PolicyStore({ hashKey, stateDir: join(dir, 'state') });
    cleanup.push(() => store.close());
    return store;
  }

  async function standIn(handler: Handler) {
    const controller = await startPullStandIn(handler);
    cleanup.push(() => {
      controller.server.closeAllConnections();
      controller.server.close();
      return once(controller.server, 'close');
    });
    return controller;
  }

  /** A controller that answers version 1 once released, and a pull from it that is under way. */
  async function pullHeldBack(store: PolicyStore) {
    let release: () => void = () => undefined;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const controller = await standIn(async (_, response) => {
      await released;
      answer(response, 200, { name: 'embeddings', spec: spec(1) });
    });
    const puller = pull(controller.url, store);
    while (controller.seen.length === 0) await new Promise((resolve) => setImmediate(resolve));
    return { puller, release };
  }

  function pull(url: string, store: PolicyStore, policyName = 'embeddings', log = (_: string) => undefined) {
    const puller = startPolicyPull({
      url,
      tokenFile,
      namespace: 'ml',
      policyName,
      store,
      backoff: fast,
      log,
    });
    cleanup.push(() => puller.close());
    return puller;
  }

  it("asks for its namespace's policy with the token and applies the answer over the loaded one", async () => {
    const controller = await standIn((_, response) =>
      answer(response, 200, { name: 'embeddings', hash: 'sha256:x', spec: spec(200) }),
    );
    const store = newStore();
    await store.apply('embeddings', spec(100));

    const outcome = await pull(`${controller.url}/`, store).done;

    const expected = policyHash(policySpecSchema.parse(spec(200)));
    assert.deepEqual(outcome, { kind: 'applied', hash: expected, changed: true });
    assert.deepEqual(controller.seen, [
      { method: 'GET', url: '/v1/policies/ml/embeddings', authorization: `Bearer ${TOKEN}` },
    ]);
    assert.equal(store.current()?.hash, expected);
    // Persisted as the last good policy, like a push.
    const saved = JSON.parse(await readFile(join(dir, 'state', 'last-good-policy.json'), 'utf8'));
    assert.equal(policyHash(policySpecSchema.parse(saved.spec)), expected);
  });

  it('retries through refusals, errors and an unreadable token until the controller answers', async () => {
    await rm(tokenFile);
    let calls = 0;
    const controller = await standIn(async (_, response) => {
      calls += 1;
      if (calls === 1) return answer(response, 503, { error: 'cannot verify the token now; retry' });
      if (calls === 2) return answer(response, 404, { error: 'no valid EmbeddingPolicy ml/embeddings' });
      if (calls === 3) return void response.writeHead(200).end('not json');
      if (calls === 4) return answer(response, 200, { name: 'other', spec: spec(1) });
      answer(response, 200, { name: 'embeddings', spec: spec(300) });
    });
    const store = newStore();
    const puller = pull(controller.url, store);
    // Attempts before the kubelet writes the token never reach the controller.
    await writeFile(tokenFile, TOKEN);

    const outcome = await puller.done;
    assert.equal(outcome.kind, 'applied');
    assert.equal(calls, 5);
    assert.equal(store.current()?.name, 'embeddings');
    assert.equal(store.current()?.hash, policyHash(policySpecSchema.parse(spec(300))));
  });

  it('drops the loaded policy, and its saved copy, when the controller says the policy does not exist', async () => {
    let calls = 0;
    const store = newStore();
    await store.apply('embeddings', spec(100));
    const loaded = store.current();
    const kept: boolean[] = [];
    const controller = await standIn((_, response) => {
      calls += 1;
      kept.push(store.current() === loaded);
      // Cannot answer now, and a 404 that is not the controller's word: neither drops anything.
      if (calls === 1) return answer(response, 503, { error: 'the policy cache is not in sync; retry' });
      if (calls === 2) return answer(response, 404, { error: 'not found' });
      answer(response, 404, { status: 'absent', error: 'EmbeddingPolicy ml/embeddings does not exist' });
    });
    const logged: string[] = [];
    const outcome = await pull(controller.url, store, 'embeddings', (message) => void logged.push(message))
      .done;

    assert.deepEqual(outcome, { kind: 'absent' });
    assert.deepEqual(kept, [true, true, true]);
    assert.equal(store.current(), undefined);
    const saved = JSON.parse(await readFile(join(dir, 'state', 'last-good-policy.json'), 'utf8'));
    assert.deepEqual(saved, { name: 'embeddings', revoked: true });
    assert.equal(logged.filter((m) => m.includes('does not exist')).length, 1, logged.join('\n'));
    const bootstrap = join(dir, 'bootstrap.json');
    await writeFile(bootstrap, JSON.stringify({ name: 'embeddings', spec: spec(100) }));
    const restarted = newStore();
    assert.equal(await restarted.load(bootstrap), 'revoked');
    assert.equal(restarted.current(), undefined);
  });

  it('refuses a policy the store cannot use and keeps the last good one', async () => {
    const controller = await standIn((_, response) =>
      answer(response, 200, { name: 'embeddings', spec: { limits: { vectorsPerMinute: -1 } } }),
    );
    const store = newStore();
    await store.apply('embeddings', spec(100));
    const before = store.current();

    const outcome = await pull(controller.url, store).done;

    assert.equal(outcome.kind, 'refused');
    assert.match(outcome.kind === 'refused' ? outcome.reason : '', /vectorsPerMinute/);
    assert.equal(store.current(), before);
    assert.equal(controller.seen.length, 1, 'the same bytes are not asked for again');
  });

  it('gives way to a push that lands while the pull is under way', async () => {
    const store = newStore();
    await store.apply('embeddings', spec(100));
    const { puller, release } = await pullHeldBack(store);

    await store.apply('embeddings', spec(500)); // the push
    release();

    assert.deepEqual(await puller.done, { kind: 'superseded' });
    assert.equal(store.current()?.hash, policyHash(policySpecSchema.parse(spec(500))));
  });

  it('gives way to a push then a revocation that land while the pull is under way, with nothing loaded at start', async () => {
    const store = newStore();
    const { puller, release } = await pullHeldBack(store);

    await store.apply('embeddings', spec(500)); // the push
    const revoked = await store.revoke('embeddings', { onlyNamed: 'embeddings' }); // the policy deleted
    assert.deepEqual(revoked, { ok: true, changed: true });
    release();

    assert.deepEqual(await puller.done, { kind: 'superseded' });
    assert.equal(store.current(), undefined, 'the deleted policy stays out of force');
    const saved = JSON.parse(await readFile(join(dir, 'state', 'last-good-policy.json'), 'utf8'));
    assert.deepEqual(saved, { name: 'embeddings', revoked: true });
  });

  it('stops retrying when closed, leaving the loaded policy in force', async () => {
    const store = newStore();
    await store.apply('embeddings', spec(100));
    const before = store.current();
    const puller = pull(await closedPortUrl(), store);

    await puller.close();

    assert.deepEqual(await puller.done, { kind: 'stopped' });
    assert.equal(store.current(), before);
  });
});

describe('a starting sidecar', () => {
  let fixture: SidecarFixture | undefined;
  const servers: Server[] = [];
  let dir: string;
  after(async () => {
    await fixture?.close();
    for (const server of servers) {
      server.closeAllConnections();
      server.close();
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('serves before the controller answers, then enforces the policy it pulled', async () => {
    dir = await mkdtemp(join(tmpdir(), 'veil-pull-'));
    await writeFile(join(dir, 'token'), TOKEN);
    // The controller answers only once the test has seen the sidecar start without a policy.
    let started: (spec: unknown) => void = () => undefined;
    const pulledSpec = new Promise<unknown>((resolve) => {
      started = resolve;
    });
    const controller = await startPullStandIn(async (request, response) => {
      if (request.headers.authorization !== `Bearer ${TOKEN}`) return answer(response, 401, {});
      answer(response, 200, { name: 'test', spec: await pulledSpec });
    });
    servers.push(controller.server);

    fixture = await startSidecarFixture({
      noPolicy: true,
      pullBackoff: fast,
      config: { controllerUrl: controller.url, controllerTokenFile: join(dir, 'token'), policyName: 'test' },
    });
    const token = await fixture.token();
    const embed = () => call(`${fixture?.url}/v1/embeddings`, { model: 'm', input: 'hello' }, { token });
    assert.equal(fixture.sidecar.loaded, 'none');
    assert.equal((await embed()).status, 503, 'no policy yet: serves nothing');

    started(testPolicy([fixture.issuer]));
    const outcome = await fixture.sidecar.pull;
    assert.equal(outcome?.kind, 'applied');
    assert.equal(controller.seen[0]?.url, '/v1/policies/test/test');
    assert.equal((await embed()).status, 200);
  });

  it('does not pull without a controller URL and token', async () => {
    const plain = await startSidecarFixture({});
    try {
      assert.equal(plain.sidecar.pull, undefined);
    } finally {
      await plain.close();
    }
  });
});
