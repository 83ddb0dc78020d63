import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { V1EphemeralContainer, V1Pod } from '@kubernetes/client-node';
import { connectTarget, vetBinding, vetConnect, vetEphemeralContainers } from '../../src/webhook/access.ts';
import { inject } from '../../src/webhook/inject.ts';
import { injectionSettingsSchema } from '../../src/webhook/settings.ts';
import { sidecarVolumeNames } from '../../src/webhook/sidecar.ts';
import { injectorUsername, testSettings, testTrust } from './support/settings.ts';

function modelPod(): V1Pod {
  return {
    metadata: { name: 'embedder', annotations: { 'veil.dev/inject': 'true' } },
    spec: {
      containers: [
        { name: 'model', image: 'example/model:1', ports: [{ name: 'http', containerPort: 8080 }] },
      ],
    },
  };
}

function injected(nativeSidecars = true): V1Pod {
  const settings = injectionSettingsSchema.parse({ ...testSettings, nativeSidecars });
  const result = inject({
    pod: modelPod(),
    namespace: 'ml',
    namespaceOptIn: false,
    settings,
    bootstrapPolicy: { spec: {} },
    trust: testTrust,
  });
  assert.equal(result.outcome, 'injected');
  return result.outcome === 'injected' ? result.pod : {};
}

function withEphemeral(pod: V1Pod, ...containers: V1EphemeralContainer[]): V1Pod {
  const next = structuredClone(pod);
  if (next.spec) next.spec.ephemeralContainers = [...(next.spec.ephemeralContainers ?? []), ...containers];
  return next;
}

test("without a container name, exec reaches the pod's only regular container, else none", () => {
  assert.equal(connectTarget(injected(true), undefined), 'model');
  assert.equal(connectTarget(injected(true), ''), 'model');
  // The sidecar comes first among the containers, but the API server picks none of two.
  assert.equal(connectTarget(injected(false), undefined), undefined);
  assert.equal(connectTarget(injected(false), 'veil-proxy'), 'veil-proxy');
});

test('exec and attach into the sidecar of an injected pod are refused; into the model, allowed', () => {
  for (const native of [true, false]) {
    const pod = injected(native);
    for (const subResource of ['exec', 'attach']) {
      const refusal = vetConnect(pod, subResource, 'veil-proxy');
      assert.match(refusal ?? '', new RegExp(`pods/${subResource} into container veil-proxy is refused`));
      assert.equal(vetConnect(pod, subResource, 'model'), undefined);
      assert.equal(vetConnect(pod, subResource, undefined), undefined, `native ${native}`);
    }
  }
});

test("an exec without a container name is refused when the pod's only container is the sidecar", () => {
  const pod = injected(true);
  if (pod.spec) pod.spec.containers = [{ name: 'veil-proxy', image: 'example/other:1' }];
  assert.match(vetConnect(pod, 'exec', undefined) ?? '', /veil-proxy is refused/);
});

test("a container named veil-proxy in a pod Veil did not inject is not Veil's to guard", () => {
  const pod: V1Pod = { metadata: { name: 'other' }, spec: { containers: [{ name: 'veil-proxy' }] } };
  assert.equal(vetConnect(pod, 'exec', 'veil-proxy'), undefined);
});

test('a debug container targeting the sidecar, or mounting any of its volumes or devices, is refused', () => {
  const before = injected();
  const targeting = withEphemeral(before, {
    name: 'debugger',
    image: 'busybox',
    targetContainerName: 'veil-proxy',
  });
  assert.match(vetEphemeralContainers(before, targeting) ?? '', /debugger targets veil-proxy/);
  for (const volume of Object.values(sidecarVolumeNames)) {
    const mounting = withEphemeral(before, {
      name: 'debugger',
      image: 'busybox',
      targetContainerName: 'model',
      volumeMounts: [{ name: volume, mountPath: '/mnt' }],
    });
    const refused = new RegExp(`ephemeral container debugger mounts ${volume}, a volume of the Veil sidecar`);
    assert.match(vetEphemeralContainers(before, mounting) ?? '', refused);
    const attaching = withEphemeral(before, {
      name: 'debugger',
      image: 'busybox',
      volumeDevices: [{ name: volume, devicePath: '/dev/xvda' }],
    });
    assert.match(vetEphemeralContainers(before, attaching) ?? '', refused);
  }
});

test('a privileged debug container, or one adding capabilities past baseline and SYS_PTRACE, is refused on an injected pod', () => {
  const before = injected();
  const sysadmin = withEphemeral(before, {
    name: 'debugger',
    image: 'busybox',
    targetContainerName: 'model',
    securityContext: { privileged: true },
  });
  assert.match(vetEphemeralContainers(before, sysadmin) ?? '', /ephemeral container debugger is privileged/);
  const netAdmin = withEphemeral(before, {
    name: 'debugger',
    image: 'busybox',
    securityContext: { capabilities: { add: ['NET_ADMIN'] } },
  });
  assert.match(
    vetEphemeralContainers(before, netAdmin) ?? '',
    /debugger adds capabilities beyond Pod Security baseline \(NET_ADMIN\)/,
  );
  // What kubectl debug --target adds: it traces the target's processes, never the sidecar's.
  const general = withEphemeral(before, {
    name: 'debugger',
    image: 'busybox',
    targetContainerName: 'model',
    securityContext: { capabilities: { add: ['SYS_PTRACE'] } },
  });
  assert.equal(vetEphemeralContainers(before, general), undefined);
});

test('a debug container on the model, or on a pod Veil did not inject, is allowed', () => {
  const before = injected();
  const onModel = withEphemeral(before, { name: 'debugger', image: 'busybox', targetContainerName: 'model' });
  assert.equal(vetEphemeralContainers(before, onModel), undefined);
  const untargeted = withEphemeral(before, { name: 'shell', image: 'busybox' });
  assert.equal(vetEphemeralContainers(before, untargeted), undefined);

  const plain = modelPod();
  const intoPlain = withEphemeral(plain, {
    name: 'debugger',
    image: 'busybox',
    targetContainerName: 'veil-proxy',
  });
  assert.equal(vetEphemeralContainers(plain, intoPlain), undefined);
});

test('only the debug containers an update adds are judged', () => {
  // One the pod already has (added before the guard existed) cannot be removed.
  const before = withEphemeral(injected(), {
    name: 'old',
    image: 'busybox',
    targetContainerName: 'veil-proxy',
  });
  const after = withEphemeral(before, { name: 'new', image: 'busybox', targetContainerName: 'model' });
  assert.equal(vetEphemeralContainers(before, after), undefined);
});

test("a binding that would change Veil's marks on an injected pod is refused", () => {
  const pod = injected();
  for (const [binding, message] of [
    [
      { annotations: { 'veil.dev/bootstrap-policy': '{"spec":{"access":{}}}' } },
      /veil\.dev\/bootstrap-policy/,
    ],
    [{ annotations: { 'veil.dev/status': '{}' } }, /veil\.dev\/status/],
    [{ annotations: { 'veil.dev/policy': 'lenient' } }, /veil\.dev\/policy/],
    [{ labels: { 'veil.dev/injected': 'false' } }, /cannot be removed/],
  ] as const) {
    assert.match(vetBinding(pod, binding) ?? '', message);
  }
});

test('a binding may not forge the injected label; others bind as ever', () => {
  assert.match(
    vetBinding(modelPod(), { labels: { 'veil.dev/injected': 'true' } }) ?? '',
    /cannot be added to a pod it did not inject/,
  );
  const pod = injected();
  const annotations = pod.metadata?.annotations ?? {};
  assert.equal(vetBinding(pod, {}), undefined);
  assert.equal(vetBinding(pod, { labels: { 'topology.kubernetes.io/zone': 'a' } }), undefined);
  // Carrying what the pod already has changes nothing.
  assert.equal(
    vetBinding(pod, { annotations: { 'veil.dev/status': annotations['veil.dev/status'] ?? '' } }),
    undefined,
  );
});
