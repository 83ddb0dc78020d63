// The controller against a real kube-apiserver: what its periodic resync repairs
// when no pod or policy event would, and what it tells operators.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { GROUP, VERSION } from '@veil/core';
import {
  applyPolicy,
  eventually,
  freshNamespace,
  installCrds,
  kubectl,
} from '../../../../test/e2e/kube/support/cluster.ts';
import { type ControlPlane, startControlPlane } from '../../../../test/harness/index.ts';
import { startController } from '../../src/controller/controller.ts';
import { controllerKeyFromJwk, generateControllerJwk } from '../../src/controller/keys.ts';
import type { LogFields } from '../../src/controller/log.ts';

let cp: ControlPlane;

before(async () => {
  cp = await startControlPlane();
  await installCrds(cp);
});

after(async () => {
  await cp?.stop();
});

test('a key ConfigMap deleted by hand comes back at the next resync', async () => {
  const namespace = await freshNamespace(cp, 'resync');
  const core = cp.kubeConfig().makeApiClient(CoreV1Api);
  // An injected pod is what makes the controller publish its key in a namespace.
  await core.createNamespacedPod({
    namespace,
    body: {
      metadata: { name: 'embedder', labels: { 'veil.dev/injected': 'true' } },
      spec: { containers: [{ name: 'model', image: 'example.invalid/model:1' }] },
    },
  });
  const controller = await startController({
    kubeConfig: cp.kubeConfig(),
    identity: 'controller-0',
    key: await controllerKeyFromJwk(await generateControllerJwk()),
    namespace,
    namespaces: [namespace],
    publishKey: { name: 'veil-controller-key', key: 'jwk.json' },
    push: { resyncMs: 200 },
  });
  const read = async () => {
    try {
      return await core.readNamespacedConfigMap({ namespace, name: 'veil-controller-key' });
    } catch {
      return undefined;
    }
  };
  try {
    const published = await eventually('the key ConfigMap', read);
    await core.deleteNamespacedConfigMap({ namespace, name: 'veil-controller-key' });
    const back = await eventually(
      'the key ConfigMap back',
      async () => {
        const current = await read();
        return current?.metadata?.uid === published.metadata?.uid ? undefined : current;
      },
      5000,
    );
    assert.equal(back.data?.['jwk.json'], published.data?.['jwk.json']);
  } finally {
    await controller.stop();
  }
});

test('deleting a policy says it is revoked, and the pull endpoint then knows it does not exist', async () => {
  const namespace = await freshNamespace(cp, 'deleted');
  const core = cp.kubeConfig().makeApiClient(CoreV1Api);
  await applyPolicy(cp, namespace, 'default', {});
  // RE2 has no look-behind: valid for the API server's schema, invalid for Veil.
  await applyPolicy(cp, namespace, 'broken', {
    masking: {
      rules: [
        { name: 'x', patterns: [{ name: 'x', regex: '(?<=a)b' }], operator: 'redact', scopes: ['forward'] },
      ],
    },
  });
  for (const name of ['embedder-0', 'embedder-1'])
    await core.createNamespacedPod({
      namespace,
      body: {
        metadata: { name, labels: { 'veil.dev/injected': 'true' } },
        spec: { containers: [{ name: 'model', image: 'example.invalid/model:1' }] },
      },
    });
  const warnings: { message: string; fields?: LogFields }[] = [];
  const controller = await startController({
    kubeConfig: cp.kubeConfig(),
    identity: 'controller-0',
    key: await controllerKeyFromJwk(await generateControllerJwk()),
    namespace,
    namespaces: [namespace],
    log: { info: () => undefined, warn: (message, fields) => warnings.push({ message, fields }) },
  });
  try {
    assert.ok(controller.policy(namespace, 'default'), 'the caches hold a full list once started');
    assert.equal((await controller.lookup(namespace, 'default')).kind, 'valid');
    // It exists, with no valid version: a sidecar asking keeps what it has.
    assert.deepEqual(await controller.lookup(namespace, 'broken'), {
      kind: 'unavailable',
      reason: `this replica knows no valid version of ${namespace}/broken`,
    });
    assert.deepEqual(await controller.lookup(namespace, 'never-made'), { kind: 'absent' });
    assert.deepEqual(await controller.lookup('unwatched', 'default'), {
      kind: 'unavailable',
      reason: 'this controller does not watch namespace unwatched',
    });
    await cp.kubeConfig().makeApiClient(CustomObjectsApi).deleteNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: 'embeddingpolicies',
      namespace,
      name: 'default',
    });
    const warned = await eventually('the deletion warning', async () =>
      warnings.find((w) => w.message.startsWith('policy deleted')),
    );
    assert.equal(
      warned.message,
      'policy deleted: it is revoked from its pods, which serve nothing until it is re-created',
    );
    assert.deepEqual(warned.fields, { policy: `${namespace}/default`, pods: 2 });
    assert.deepEqual(await controller.lookup(namespace, 'default'), { kind: 'absent' });
  } finally {
    await controller.stop();
  }
});

test('while its policy watch is down, the controller vouches for no absence', async () => {
  const namespace = await freshNamespace(cp, 'unsynced');
  await applyPolicy(cp, namespace, 'default', {});
  const controller = await startController({
    kubeConfig: cp.kubeConfig(),
    identity: 'controller-0',
    key: await controllerKeyFromJwk(await generateControllerJwk()),
    namespace,
    namespaces: [namespace],
  });
  try {
    assert.deepEqual(await controller.lookup(namespace, 'never-made'), { kind: 'absent' });
    // The resource itself gone: the watch ends and every relist fails until it is back.
    await kubectl(cp, 'delete', 'crd', 'embeddingpolicies.veil.dev', '--wait=true');
    const unsure = await eventually('the cache out of sync', async () => {
      const found = await controller.lookup(namespace, 'never-made');
      return found.kind === 'unavailable' ? found : undefined;
    });
    assert.equal(unsure.reason, 'the policy cache is not in sync with the API server');
    await installCrds(cp);
    await eventually(
      'the cache in sync again',
      async () => ((await controller.lookup(namespace, 'never-made')).kind === 'absent' ? true : undefined),
      60_000,
    );
  } finally {
    await controller.stop();
  }
});
