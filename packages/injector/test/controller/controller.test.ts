// The controller against a real kube-apiserver: what its periodic resync repairs
// when no pod or policy event would, and what it tells operators.
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
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
import { CaBundleHolder } from '../../src/certs/cabundle.ts';
import { startController } from '../../src/controller/controller.ts';
import {
  type ControllerKey,
  controllerKeyFromJwk,
  generateControllerJwk,
} from '../../src/controller/keys.ts';
import type { LogFields } from '../../src/controller/log.ts';

let cp: ControlPlane;

before(async () => {
  cp = await startControlPlane();
  await installCrds(cp);
});

after(async () => {
  await cp?.stop();
});

/** Deletes an EmbeddingPolicy at the API server, as a user would. */
async function deletePolicy(namespace: string, name: string): Promise<void> {
  await cp.kubeConfig().makeApiClient(CustomObjectsApi).deleteNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    plural: 'embeddingpolicies',
    namespace,
    name,
  });
}

/** A pod carrying the injected label, as the controller watches for; nothing checks it here. */
async function createLabelledPod(namespace: string, name = 'embedder'): Promise<void> {
  await cp
    .kubeConfig()
    .makeApiClient(CoreV1Api)
    .createNamespacedPod({
      namespace,
      body: {
        metadata: { name, labels: { 'veil.dev/injected': 'true' } },
        spec: { containers: [{ name: 'model', image: 'example.invalid/model:1' }] },
      },
    });
}

test('a key ConfigMap deleted by hand comes back at the next resync', async () => {
  const namespace = await freshNamespace(cp, 'resync');
  const core = cp.kubeConfig().makeApiClient(CoreV1Api);
  // An injected pod is what makes the controller publish its key in a namespace.
  await createLabelledPod(namespace);
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

test('the leader patches its key and CA bundle into injected pods, and a rotation replaces them on running pods', async () => {
  const namespace = await freshNamespace(cp, 'trust');
  const core = cp.kubeConfig().makeApiClient(CoreV1Api);
  await createLabelledPod(namespace);
  const trustOnPod = async (key: ControllerKey, bundle: string | undefined) =>
    eventually(`pod annotations with key ${key.kid}`, async () => {
      const pod = await core.readNamespacedPod({ namespace, name: 'embedder' });
      const annotations = pod.metadata?.annotations ?? {};
      return annotations['veil.dev/controller-key'] === JSON.stringify(key.publicJwk) &&
        annotations['veil.dev/controller-ca'] === bundle
        ? annotations
        : undefined;
    });
  const start = async (key: ControllerKey, caBundle: CaBundleHolder) =>
    startController({
      kubeConfig: cp.kubeConfig(),
      identity: `controller-${key.kid.slice(0, 6).toLowerCase()}`,
      key,
      namespace,
      namespaces: [namespace],
      caBundle,
      // Longer than the test: what it sees comes from leadership, pod events and CA changes.
      push: { resyncMs: 600_000 },
    });
  const caPem = await readFile(cp.caCert, 'utf8');
  const first = await controllerKeyFromJwk(await generateControllerJwk());
  const unknownYet = new CaBundleHolder();
  const controller = await start(first, unknownYet);
  try {
    // No bundle known: none is written (the sidecar's calls fail closed until one is).
    await trustOnPod(first, undefined);
    unknownYet.set(caPem);
    await trustOnPod(first, caPem);
  } finally {
    await controller.stop();
  }
  // The next release's replica, with a new key: the running pod gets it without a restart.
  const second = await controllerKeyFromJwk(await generateControllerJwk());
  const known = new CaBundleHolder();
  known.set(caPem);
  const rotated = await start(second, known);
  try {
    await trustOnPod(second, caPem);
  } finally {
    await rotated.stop();
  }
});

test('a pod labelled injected in a namespace never injected is no injected pod to the controller', async () => {
  const excluded = await freshNamespace(cp, 'excluded');
  const served = await freshNamespace(cp, 'served');
  const core = cp.kubeConfig().makeApiClient(CoreV1Api);
  // The webhooks do not see an excluded namespace's pods, so nothing stopped this label.
  for (const namespace of [excluded, served]) await createLabelledPod(namespace);
  const warnings: { message: string; fields?: LogFields }[] = [];
  const controller = await startController({
    kubeConfig: cp.kubeConfig(),
    identity: 'controller-0',
    key: await controllerKeyFromJwk(await generateControllerJwk()),
    namespace: served,
    namespaces: [excluded, served],
    excludedNamespaces: [excluded],
    publishKey: { name: 'veil-controller-key', key: 'jwk.json' },
    log: { info: () => undefined, warn: (message, fields) => warnings.push({ message, fields }) },
  });
  const ignored = () => warnings.filter((w) => w.message.startsWith('ignoring an injected pod'));
  try {
    assert.ok(controller.injectedPod(served, 'embedder'));
    assert.equal(controller.injectedPod(excluded, 'embedder'), undefined);
    // The served namespace gets the key its pod needs; the excluded one gets nothing.
    await eventually('the key ConfigMap of the served namespace', () =>
      core.readNamespacedConfigMap({ namespace: served, name: 'veil-controller-key' }).catch(() => undefined),
    );
    await assert.rejects(core.readNamespacedConfigMap({ namespace: excluded, name: 'veil-controller-key' }));
    // A pod injected before its namespace was excluded is out of policy control: the operator is told, once.
    assert.deepEqual(
      ignored().map((w) => w.fields),
      [{ namespace: excluded, pod: 'embedder' }],
    );
    // An update of the same pod is no new warning; a second pod is (the watch delivers them in order).
    await kubectl(cp, 'annotate', 'pod', 'embedder', '-n', excluded, 'touched=yes');
    await createLabelledPod(excluded, 'embedder-1');
    await eventually('the warning about the second pod', async () =>
      ignored().some((w) => w.fields?.pod === 'embedder-1') ? true : undefined,
    );
    assert.deepEqual(
      ignored().map((w) => w.fields?.pod),
      ['embedder', 'embedder-1'],
    );
  } finally {
    await controller.stop();
  }
});

test('deleting a policy says it is revoked, and the pull endpoint then knows it does not exist', async () => {
  const namespace = await freshNamespace(cp, 'deleted');
  await applyPolicy(cp, namespace, 'default', {});
  // RE2 has no look-behind: valid for the API server's schema, invalid for Veil.
  await applyPolicy(cp, namespace, 'broken', {
    masking: {
      rules: [
        { name: 'x', patterns: [{ name: 'x', regex: '(?<=a)b' }], operator: 'redact', scopes: ['forward'] },
      ],
    },
  });
  for (const name of ['embedder-0', 'embedder-1']) await createLabelledPod(namespace, name);
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
    await deletePolicy(namespace, 'default');
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

/**
 * A TCP relay to the API server that can be cut and restored: one replica
 * loses its connection while the API server, and every other client, carry on.
 */
async function severableKubeconfig(
  controlPlane: ControlPlane,
): Promise<{ file: string; cut(): void; restore(): void; close(): Promise<void> }> {
  const target = new URL(controlPlane.server);
  const open = new Set<Socket>();
  let severed = false;
  const relay: Server = createServer((client) => {
    if (severed) return client.destroy();
    const upstream = connect(Number(target.port), target.hostname);
    for (const socket of [client, upstream]) {
      open.add(socket);
      socket.on('close', () => open.delete(socket));
    }
    client.pipe(upstream).pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  const { port } = relay.address() as { port: number };
  const file = join(controlPlane.dir, `severable-${port}.kubeconfig`);
  const text = await readFile(controlPlane.kubeconfig, 'utf8');
  await writeFile(file, text.replace(controlPlane.server, `https://127.0.0.1:${port}`));
  return {
    file,
    cut() {
      severed = true;
      for (const socket of open) socket.destroy();
    },
    restore() {
      severed = false;
    },
    close: () => new Promise<void>((resolve) => relay.close(() => resolve())),
  };
}

test('a cache out of sync vouches for no presence', async () => {
  const namespace = await freshNamespace(cp, 'unsynced-presence');
  await applyPolicy(cp, namespace, 'default', {});
  const link = await severableKubeconfig(cp);
  const controller = await startController({
    kubeConfig: cp.kubeConfig(link.file),
    identity: 'controller-0',
    key: await controllerKeyFromJwk(await generateControllerJwk()),
    namespace,
    namespaces: [namespace],
  });
  try {
    assert.equal((await controller.lookup(namespace, 'default')).kind, 'valid');
    assert.ok(await controller.bootstrapPolicy(namespace, 'default'));
    link.cut();
    // Deleted while this replica cannot hear of it: its cache still holds the policy.
    await deletePolicy(namespace, 'default');
    const unsure = await eventually('the cache out of sync', async () => {
      const found = await controller.lookup(namespace, 'never-made');
      return found.kind === 'unavailable' ? found : undefined;
    });
    assert.equal(unsure.reason, 'the policy cache is not in sync with the API server');
    assert.ok(controller.policy(namespace, 'default'), 'the stale copy is still cached');
    assert.deepEqual(await controller.lookup(namespace, 'default'), {
      kind: 'unavailable',
      reason: 'the policy cache is not in sync with the API server',
    });
    await assert.rejects(controller.bootstrapPolicy(namespace, 'default'), {
      message: `the policy cache is not in sync with the API server: EmbeddingPolicy ${namespace}/default cannot be vouched for now`,
    });
    link.restore();
    await eventually(
      'the cache in sync again',
      async () => ((await controller.lookup(namespace, 'default')).kind === 'absent' ? true : undefined),
      60_000,
    );
    assert.equal(await controller.bootstrapPolicy(namespace, 'default'), undefined);
  } finally {
    await controller.stop();
    await link.close();
  }
});
