// The controller against a real kube-apiserver: what its periodic resync repairs
// when no pod or policy event would.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { CoreV1Api } from '@kubernetes/client-node';
import { eventually, freshNamespace, installCrds } from '../../../../test/e2e/kube/support/cluster.ts';
import { type ControlPlane, startControlPlane } from '../../../../test/harness/index.ts';
import { startController } from '../../src/controller/controller.ts';
import { controllerKeyFromJwk, generateControllerJwk } from '../../src/controller/keys.ts';

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
