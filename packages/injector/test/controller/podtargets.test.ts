// Injected pods as the controller feeds them to the distributor, through the
// real informer against a stand-in API server that can cut a watch off the way
// the API server does when the history it would resume from is gone (410).
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { Distributor } from '../../src/controller/distributor.ts';
import { watchResource } from '../../src/controller/informers.ts';
import { podTargets } from '../../src/controller/pod-targets.ts';
import { podResource } from '../../src/controller/pods.ts';
import { judge } from '../../src/controller/policies.ts';
import type { ReadOutcome, SidecarTarget } from '../../src/controller/push.ts';
import { policyStatus } from '../../src/controller/status.ts';

const valid = judge({});
const hash = valid.valid ? valid.hash : '';

function pod(uid: string, resourceVersion: string, ip: string): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      namespace: 'ml',
      name: 'embed-0',
      uid,
      resourceVersion,
      labels: { 'veil.dev/injected': 'true' },
    },
    spec: { containers: [{ name: 'model', image: 'example.invalid/model:1' }] },
    status: { phase: 'Running', podIP: ip },
  };
}

/** Lists `items`; holds each watch open for `send` until `expire` ends it with a 410. */
async function fakeApiServer() {
  const state = { items: [] as V1Pod[], resourceVersion: 1 };
  const watches = new Set<ServerResponse>();
  const server = createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://localhost');
    if (url.pathname !== '/api/v1/pods') return response.writeHead(404).end();
    if (url.searchParams.get('watch') !== 'true') {
      const list = {
        apiVersion: 'v1',
        kind: 'PodList',
        metadata: { resourceVersion: String(state.resourceVersion) },
        items: state.items,
      };
      return response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(list));
    }
    response.writeHead(200, { 'content-type': 'application/json' });
    response.flushHeaders();
    watches.add(response);
    response.on('close', () => watches.delete(response));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromOptions({
    // Plain HTTP, which client-node allows only with this set.
    clusters: [
      {
        name: 'fake',
        server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        skipTLSVerify: true,
      },
    ],
    users: [{ name: 'controller' }],
    contexts: [{ name: 'fake', cluster: 'fake', user: 'controller' }],
    currentContext: 'fake',
  });
  return {
    kubeConfig,
    state,
    send(type: 'ADDED' | 'DELETED', object: V1Pod) {
      for (const watch of watches) watch.write(`${JSON.stringify({ type, object })}\n`);
    },
    expire() {
      const gone = { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410 };
      for (const watch of watches) watch.end(`${JSON.stringify({ type: 'ERROR', object: gone })}\n`);
      watches.clear();
    },
    watching: () => watches.size > 0,
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}

async function until(what: string, probe: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!probe()) {
    if (performance.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(5);
  }
}

test('a pod re-created under its name while the watch was down replaces the old one as a target', async () => {
  const api = await fakeApiServer();
  api.state.items = [pod('uid-old', '1', '10.0.0.1')];
  // The old pod's IP is gone with it; the new pod's sidecar answers.
  const client = {
    read: async (target: SidecarTarget): Promise<ReadOutcome> =>
      target.uid === 'uid-old'
        ? { kind: 'error', reason: 'connect ECONNREFUSED' }
        : { kind: 'policy', name: 'default', hash },
    push: async () => ({ kind: 'error' as const, reason: 'not expected' }),
    revoke: async () => ({ kind: 'error' as const, reason: 'not expected' }),
  };
  const distributor = new Distributor({
    client,
    policyExists: () => true,
    retry: { initialMs: 10, maxMs: 40 },
  });
  distributor.setDesired('ml/default', { name: 'default', hash, spec: {} });
  distributor.activate();
  const targeted: string[] = [];
  const watched = await watchResource(
    api.kubeConfig,
    podResource(api.kubeConfig),
    [],
    podTargets(distributor, (view) => targeted.push(view.uid)),
  );
  const uids = () => distributor.podsOf('ml/default').map((p) => p.uid);
  try {
    assert.deepEqual(uids(), ['uid-old']);

    // Deleted and re-created meanwhile: the relist shows the name with a new UID, and no delete.
    api.state.items = [pod('uid-new', '3', '10.0.0.2')];
    api.state.resourceVersion = 3;
    api.expire();
    await until('the new pod', () => targeted.includes('uid-new'));
    assert.deepEqual(uids(), ['uid-new']);
    await until('asked', () => distributor.podsOf('ml/default').every((p) => !p.unchecked));
    const view = {
      key: 'ml/default',
      namespace: 'ml',
      name: 'default',
      uid: 'p',
      generation: 1,
      resourceVersion: '1',
      verdict: valid,
      status: undefined,
    };
    const status = policyStatus({
      view,
      enforcedHash: hash,
      pods: distributor.podsOf('ml/default'),
      now: new Date(),
    });
    assert.equal(status.sync, '1/1');
    assert.equal(status.conditions?.at(-1)?.reason, 'Synced');

    // A delete the watch does see leaves nothing behind for the next pod of that name.
    await until('watching again', api.watching);
    api.send('DELETED', pod('uid-new', '4', '10.0.0.2'));
    await until('deleted', () => uids().length === 0);
    api.send('ADDED', pod('uid-third', '5', '10.0.0.3'));
    await until('the third pod', () => targeted.includes('uid-third'));
    assert.deepEqual(uids(), ['uid-third']);
  } finally {
    distributor.deactivate();
    await watched.stop();
    await api.close();
  }
});
