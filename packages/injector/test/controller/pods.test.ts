import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { V1Pod } from '@kubernetes/client-node';
import { parse } from 'yaml';
import { podView } from '../../src/controller/pods.ts';

// A pod exactly as the webhook leaves it: the controller must find its admin port.
const golden = (
  parse(
    readFileSync(
      join(import.meta.dirname, '..', '..', 'testdata', 'golden', 'deployment-pod.out.yaml'),
      'utf8',
    ),
  ) as { pod: V1Pod }
).pod;

function running(pod: V1Pod, ip: string, restarts = 0): V1Pod {
  return {
    ...pod,
    metadata: { ...pod.metadata, name: 'embedder-1', uid: 'uid-1' },
    status: {
      phase: 'Running',
      podIP: ip,
      initContainerStatuses: [
        { name: 'veil-proxy', restartCount: restarts, ready: true, image: 'x', imageID: 'x' },
      ],
    },
  };
}

test('an injected pod is pushed at its veil-admin port, for the policy it names', () => {
  const view = podView(running(golden, '10.0.0.7'));
  assert.deepEqual(view, {
    uid: 'uid-1',
    namespace: 'ml',
    name: 'embedder-1',
    policyKey: 'ml/embeddings',
    adminUrl: 'https://10.0.0.7:15090',
    incarnation: '10.0.0.7#0',
    terminating: false,
  });
});

test('the admin port follows the injector settings, IPv6 is bracketed, no policy means default', () => {
  const pod = structuredClone(running(golden, 'fd00::7'));
  const sidecar = pod.spec?.initContainers?.find((c) => c.name === 'veil-proxy');
  const admin = sidecar?.ports?.find((p) => p.name === 'veil-admin');
  assert.ok(admin);
  admin.containerPort = 25_090;
  delete pod.metadata?.annotations?.['veil.dev/policy'];
  const view = podView(pod);
  assert.equal(view?.adminUrl, 'https://[fd00::7]:25090');
  assert.equal(view?.policyKey, 'ml/default');
});

test('a pod without an IP is known but has nowhere to push yet', () => {
  const view = podView({ ...running(golden, ''), status: { phase: 'Pending' } });
  assert.equal(view?.adminUrl, undefined);
});

test('a sidecar restart changes the incarnation, so it is asked again', () => {
  assert.notEqual(
    podView(running(golden, '10.0.0.7', 0))?.incarnation,
    podView(running(golden, '10.0.0.7', 1))?.incarnation,
  );
});

test('finished and uninjected pods are no targets', () => {
  const base = running(golden, '10.0.0.7');
  assert.equal(podView({ ...base, status: { ...base.status, phase: 'Succeeded' } }), undefined);
  assert.equal(podView({ ...base, status: { ...base.status, phase: 'Failed' } }), undefined);
  assert.equal(podView({ ...base, metadata: { ...base.metadata, labels: {} } }), undefined);
});

test('a terminating pod is still a target, since its sidecar serves until it stops, and says so', () => {
  const base = running(golden, '10.0.0.7');
  const view = podView({ ...base, metadata: { ...base.metadata, deletionTimestamp: new Date() } });
  assert.equal(view?.adminUrl, 'https://10.0.0.7:15090');
  assert.equal(view?.terminating, true);
});
