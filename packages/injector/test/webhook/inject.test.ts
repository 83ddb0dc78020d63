import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { unsetGraceRefused } from '../../src/webhook/conflicts.ts';
import { type InjectionInput, type InjectionResult, inject } from '../../src/webhook/inject.ts';
import { type InjectionSettings, injectionSettingsSchema } from '../../src/webhook/settings.ts';
import { sidecarVolumeNames } from '../../src/webhook/sidecar.ts';
import { injectionStatusSchema } from '../../src/webhook/status.ts';
import { injectorUsername, testSettings, testTrust } from './support/settings.ts';

const settings = injectionSettingsSchema.parse(testSettings);

function modelPod(annotations: Record<string, string> = { 'veil.dev/inject': 'true' }): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'embedder', namespace: 'ml', annotations },
    spec: {
      containers: [
        {
          name: 'model',
          image: 'ghcr.io/example/embedder:1',
          ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }],
        },
      ],
    },
  };
}

/** The webhook's answer for `pod` in namespace ml, with the test settings and trust unless overridden. */
function injectInMl(pod: V1Pod, overrides: Partial<Omit<InjectionInput, 'pod'>> = {}): InjectionResult {
  return inject({
    pod,
    namespace: 'ml',
    namespaceOptIn: false,
    settings,
    bootstrapPolicy: {},
    trust: testTrust,
    ...overrides,
  });
}

function injected(pod: V1Pod, native = true): V1Pod {
  const result = injectInMl(pod, {
    settings: { ...settings, nativeSidecars: native },
    bootstrapPolicy: { spec: {} },
  });
  assert.equal(result.outcome, 'injected', result.outcome === 'denied' ? result.message : '');
  return result.outcome === 'injected' ? result.pod : pod;
}

function sidecarOf(pod: V1Pod): V1Container {
  const all = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])];
  const sidecar = all.find((c) => c.name === 'veil-proxy');
  assert.ok(sidecar, 'a veil-proxy container');
  return sidecar;
}

/**
 * How Kubernetes resolves a Service's named targetPort in a pod (FindPort): regular
 * containers first, then native sidecars.
 */
function resolveTargetPort(pod: V1Pod, name: string): number | undefined {
  const sidecars = (pod.spec?.initContainers ?? []).filter((c) => c.restartPolicy === 'Always');
  for (const container of [...(pod.spec?.containers ?? []), ...sidecars]) {
    const port = container.ports?.find((p) => p.name === name && (p.protocol ?? 'TCP') === 'TCP');
    if (port !== undefined) return port.containerPort;
  }
  return undefined;
}

for (const native of [true, false]) {
  test(`a Service targeting the model's named port reaches the proxy (native sidecars ${native})`, () => {
    const pod = modelPod();
    assert.equal(resolveTargetPort(pod, 'http'), 8080);
    const out = injected(pod, native);
    assert.equal(resolveTargetPort(out, 'http'), settings.proxyPort);
    const model = out.spec?.containers.find((c) => c.name === 'model');
    assert.deepEqual(model?.ports, [{ name: 'veil-upstream', containerPort: 8080, protocol: 'TCP' }]);
    assert.equal(
      sidecarOf(out).env?.find((e) => e.name === 'VEIL_UPSTREAM')?.value,
      'http://127.0.0.1:8080',
      'the proxy forwards to the model on loopback',
    );
  });
}

test('the native sidecar is the first init container and restarts always', () => {
  const pod = modelPod();
  if (pod.spec) pod.spec.initContainers = [{ name: 'migrate', image: 'ghcr.io/example/migrate:1' }];
  const out = injected(pod);
  assert.deepEqual(
    out.spec?.initContainers?.map((c) => [c.name, c.restartPolicy]),
    [
      ['veil-proxy', 'Always'],
      ['migrate', undefined],
    ],
  );
  assert.deepEqual(
    out.spec?.containers.map((c) => c.name),
    ['model'],
  );
});

test('the sidecar passes Pod Security restricted', () => {
  const context = sidecarOf(injected(modelPod())).securityContext;
  assert.equal(context?.runAsNonRoot, true);
  assert.ok((context?.runAsUser ?? 0) > 0);
  assert.equal(context?.allowPrivilegeEscalation, false);
  assert.deepEqual(context?.capabilities, { drop: ['ALL'] });
  assert.equal(context?.seccompProfile?.type, 'RuntimeDefault');
  assert.equal(context?.readOnlyRootFilesystem, true);
  assert.equal(context?.privileged, undefined);
});

test('the sidecar reads the pod identity from the downward API', () => {
  const env = sidecarOf(injected(modelPod())).env ?? [];
  const fieldOf = (name: string) => env.find((e) => e.name === name)?.valueFrom?.fieldRef?.fieldPath;
  assert.equal(fieldOf('VEIL_POD_NAME'), 'metadata.name');
  assert.equal(fieldOf('VEIL_POD_NAMESPACE'), 'metadata.namespace');
  assert.equal(fieldOf('VEIL_POD_UID'), 'metadata.uid');
});

test('the S3 credentials come from a Secret, never as values', () => {
  const env = sidecarOf(injected(modelPod())).env ?? [];
  for (const name of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY']) {
    const variable = env.find((e) => e.name === name);
    assert.equal(variable?.value, undefined);
    assert.equal(variable?.valueFrom?.secretKeyRef?.name, 'veil-s3');
  }
});

test('without S3 settings the sidecar gets no S3 environment', () => {
  const { s3: _s3, ...local } = settings;
  const result = injectInMl(modelPod(), { settings: local });
  assert.equal(result.outcome, 'injected');
  const names = result.outcome === 'injected' ? (sidecarOf(result.pod).env ?? []).map((e) => e.name) : [];
  assert.deepEqual(
    names.filter((n) => n.includes('S3') || n.startsWith('AWS_')),
    [],
  );
});

test('the OTEL_* variables and the evidence prefix reach the sidecar as set', () => {
  const configured = injectionSettingsSchema.parse({
    ...testSettings,
    s3: { ...testSettings.s3, prefix: 'platform/' },
    otelEnv: { OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://otel:4318' },
  });
  const result = injectInMl(modelPod(), { settings: configured });
  assert.equal(result.outcome, 'injected');
  const env = result.outcome === 'injected' ? (sidecarOf(result.pod).env ?? []) : [];
  const valueOf = (name: string) => env.find((e) => e.name === name)?.value;
  assert.equal(valueOf('VEIL_S3_PREFIX'), 'platform/');
  assert.equal(valueOf('OTEL_TRACES_EXPORTER'), 'otlp');
  assert.equal(valueOf('OTEL_EXPORTER_OTLP_ENDPOINT'), 'http://otel:4318');
  const plainEnv = sidecarOf(injected(modelPod())).env ?? [];
  assert.deepEqual(
    plainEnv.filter((e) => e.name.startsWith('OTEL_') || e.name === 'VEIL_S3_PREFIX'),
    [],
  );
});

test("the sidecar's tuning reaches its environment, and only what was set", () => {
  const variables = (pod: V1Pod) =>
    Object.fromEntries(
      (sidecarOf(pod).env ?? [])
        .filter((e) => /TIMEOUT|SPOOL_CAPACITY|GRACE/.test(e.name))
        .map((e) => [e.name, e.value]),
    );
  assert.deepEqual(variables(injected(modelPod())), {});
  const tuning = injectionSettingsSchema.parse({
    ...testSettings,
    tuning: { bodyTimeoutMs: 20_000, spoolCapacityBytes: 268_435_456, auditCloseGraceSeconds: 15 },
  }).tuning;
  const result = injectInMl(modelPod(), { settings: { ...settings, tuning } });
  assert.equal(result.outcome, 'injected');
  assert.deepEqual(variables(result.outcome === 'injected' ? result.pod : modelPod()), {
    VEIL_BODY_TIMEOUT_MS: '20000',
    VEIL_SPOOL_CAPACITY_BYTES: '268435456',
    VEIL_AUDIT_CLOSE_GRACE_SECONDS: '15',
  });
});

test('a pod injected where the chart made no NetworkPolicy is warned that its model can be reached around the proxy', () => {
  const warningsIn = (namespace: string, networkPolicyNamespaces?: string[]) => {
    const result = injectInMl(modelPod(), { namespace, settings: { ...settings, networkPolicyNamespaces } });
    assert.equal(result.outcome, 'injected');
    return result.outcome === 'injected' ? result.warnings : [];
  };
  assert.deepEqual(warningsIn('search', ['ml']), [
    "namespace search has no Veil NetworkPolicy (the chart's workloadNamespaces): other pods can reach the model's port around the proxy",
  ]);
  assert.deepEqual(warningsIn('ml', ['ml']), []);
  // Without the chart's list the injector cannot tell, and says nothing.
  assert.deepEqual(warningsIn('search'), []);
});

test('a namespace the settings exclude is never injected, as kube-system and the injector namespace are', () => {
  for (const namespace of ['ops', 'kube-system', settings.injectorNamespace]) {
    const result = injectInMl(modelPod(), {
      namespace,
      namespaceOptIn: true,
      settings: { ...settings, excludedNamespaces: ['ops'] },
    });
    assert.equal(result.outcome, 'unchanged', namespace);
    assert.equal(result.outcome === 'unchanged' && result.reason, `namespace ${namespace} is never injected`);
  }
});

test("a pod's sidecar memory must be above the body memory the settings let the sidecar hold", () => {
  const tuning = injectionSettingsSchema.parse({
    ...testSettings,
    tuning: { bodyMemoryBytes: 128 * 1024 * 1024 },
  }).tuning;
  const injectWith = (memory: string) =>
    injectInMl(modelPod({ 'veil.dev/inject': 'true', 'veil.dev/sidecar-memory': memory }), {
      settings: { ...settings, tuning },
    });
  const under = injectWith('128Mi');
  assert.equal(under.outcome, 'denied');
  assert.match(
    under.outcome === 'denied' ? under.message : '',
    /^veil\.dev\/sidecar-memory: 128Mi must be above the sidecar's body memory \(134217728 bytes/,
  );
  const above = injectWith('192Mi');
  assert.equal(above.outcome, 'injected', above.outcome === 'denied' ? above.message : '');
  assert.equal(above.outcome === 'injected' && sidecarOf(above.pod).resources?.limits?.memory, '192Mi');
});

test('the sidecar requests the ephemeral storage a full spool holds, and sets no limit on it', () => {
  const storage = (native: boolean, spoolCapacityBytes?: number) => {
    const tuning = spoolCapacityBytes === undefined ? {} : { spoolCapacityBytes };
    const result = injectInMl(modelPod(), { settings: { ...settings, nativeSidecars: native, tuning } });
    assert.equal(result.outcome, 'injected');
    const resources = result.outcome === 'injected' ? sidecarOf(result.pod).resources : undefined;
    assert.equal(resources?.limits?.['ephemeral-storage'], undefined);
    return resources?.requests?.['ephemeral-storage'];
  };
  for (const native of [true, false]) {
    // 1 GiB of spool by default, and 64 MiB for the state files beside it.
    assert.equal(storage(native), '1088Mi');
    assert.equal(storage(native, 268_435_456), '320Mi');
    assert.equal(storage(native, 100 * 1024 * 1024 + 1), '165Mi');
  }
  const volumes = injected(modelPod()).spec?.volumes ?? [];
  assert.deepEqual(volumes.find((v) => v.name === 'veil-spool')?.emptyDir, {});
});

test('the bootstrap policy is projected into the pod from its annotation', () => {
  const out = injected(modelPod());
  const annotation = out.metadata?.annotations?.['veil.dev/bootstrap-policy'];
  assert.deepEqual(JSON.parse(annotation ?? 'null'), { spec: {} });
  const volume = out.spec?.volumes?.find((v) => v.name === 'veil-bootstrap');
  assert.equal(
    volume?.downwardAPI?.items?.[0]?.fieldRef?.fieldPath,
    "metadata.annotations['veil.dev/bootstrap-policy']",
  );
  const file = sidecarOf(out).env?.find((e) => e.name === 'VEIL_BOOTSTRAP_POLICY_FILE')?.value;
  const mount = sidecarOf(out).volumeMounts?.find((m) => m.name === 'veil-bootstrap');
  assert.equal(file, `${mount?.mountPath}/${volume?.downwardAPI?.items?.[0]?.path}`);
});

test("the sidecar trusts the controller's key and CA from its pod's annotations, never from its namespace's objects", () => {
  // Whatever the settings name, a namespace's editors can write its ConfigMaps and Secrets.
  for (const source of ['configMap', 'secret'] as const) {
    const settings = injectionSettingsSchema.parse({ ...testSettings, controllerKey: { source } });
    const result = injectInMl(modelPod());
    assert.equal(result.outcome, 'injected');
    if (result.outcome !== 'injected') return;
    const volume = result.pod.spec?.volumes?.find((v) => v.name === 'veil-controller-key');
    assert.deepEqual(volume, {
      name: 'veil-controller-key',
      downwardAPI: {
        items: [
          { path: 'jwk.json', fieldRef: { fieldPath: "metadata.annotations['veil.dev/controller-key']" } },
          { path: 'ca.crt', fieldRef: { fieldPath: "metadata.annotations['veil.dev/controller-ca']" } },
        ],
      },
    });
    const annotations = result.pod.metadata?.annotations ?? {};
    assert.deepEqual(JSON.parse(annotations['veil.dev/controller-key'] ?? 'null'), testTrust.publicJwk);
    assert.equal(annotations['veil.dev/controller-ca'], testTrust.caBundle);
    const env = sidecarOf(result.pod).env;
    assert.equal(
      env?.find((e) => e.name === 'VEIL_CONTROLLER_KEY_FILE')?.value,
      '/etc/veil/controller-key/jwk.json',
    );
    assert.equal(
      env?.find((e) => e.name === 'VEIL_CONTROLLER_CA_FILE')?.value,
      '/etc/veil/controller-key/ca.crt',
    );
  }
});

test("a pod author's own controller key and CA are replaced; with no CA known, none is left", () => {
  const pod = modelPod();
  pod.metadata = {
    ...pod.metadata,
    annotations: {
      ...pod.metadata?.annotations,
      'veil.dev/controller-key': '{"kty":"OKP","crv":"Ed25519","x":"dGVuYW50"}',
      'veil.dev/controller-ca': '-----BEGIN CERTIFICATE-----\ntenant\n-----END CERTIFICATE-----\n',
    },
  };
  const result = injectInMl(pod, { trust: { ...testTrust, caBundle: undefined } });
  assert.equal(result.outcome, 'injected');
  const annotations = result.outcome === 'injected' ? (result.pod.metadata?.annotations ?? {}) : {};
  assert.deepEqual(JSON.parse(annotations['veil.dev/controller-key'] ?? 'null'), testTrust.publicJwk);
  assert.equal(annotations['veil.dev/controller-ca'], undefined);
});

test("the hash key comes from an optional Secret of the pod's namespace, read-only", () => {
  const out = injected(modelPod());
  const sidecar = sidecarOf(out);
  const volume = out.spec?.volumes?.find((v) => v.name === 'veil-hash-key');
  // Optional, so a namespace without the Secret still runs its pods.
  assert.deepEqual(volume?.secret, {
    secretName: 'veil-hash-key',
    items: [{ key: 'key', path: 'hash.key' }],
    optional: true,
  });
  const mount = sidecar.volumeMounts?.find((m) => m.name === 'veil-hash-key');
  assert.equal(mount?.readOnly, true);
  const file = sidecar.env?.find((e) => e.name === 'VEIL_HASH_KEY_FILE')?.value;
  assert.equal(file, `${mount?.mountPath}/hash.key`);
  // The model's containers never see it.
  for (const container of out.spec?.containers ?? [])
    assert.ok(!(container.volumeMounts ?? []).some((m) => m.name === 'veil-hash-key'));

  const renamed = injectInMl(modelPod(), {
    settings: injectionSettingsSchema.parse({
      ...testSettings,
      hashKey: { secretName: 'search-hash-key', key: 'hmac' },
    }),
  });
  assert.equal(renamed.outcome, 'injected');
  const renamedVolume =
    renamed.outcome === 'injected'
      ? renamed.pod.spec?.volumes?.find((v) => v.name === 'veil-hash-key')
      : undefined;
  assert.deepEqual(renamedVolume?.secret, {
    secretName: 'search-hash-key',
    items: [{ key: 'hmac', path: 'hash.key' }],
    optional: true,
  });
});

test('the status annotation matches its schema and records what was added', () => {
  const out = injected(modelPod());
  const status = injectionStatusSchema.parse(
    JSON.parse(out.metadata?.annotations?.['veil.dev/status'] ?? '{}'),
  );
  assert.deepEqual(status.initContainers, ['veil-proxy']);
  assert.deepEqual(
    status.volumes,
    (out.spec?.volumes ?? []).map((v) => v.name),
  );
  assert.equal(status.version, settings.sidecarVersion);
  assert.deepEqual(status.portTakeover, { name: 'http', renamedTo: 'veil-upstream', proxyPort: 15080 });
});

test('inject leaves its input untouched', () => {
  const pod = modelPod();
  const before = structuredClone(pod);
  injected(pod);
  assert.deepEqual(pod, before);
});

test("a pod created already injected is rebuilt: this release's sidecar, the real bootstrap policy", () => {
  const out = injected(modelPod());
  const copy = structuredClone(out);
  sidecarOf(copy).image = 'registry.example.com/veil/veil-sidecar:0.0.9';
  sidecarOf(copy).env?.push({ name: 'VEIL_S3_BUCKET', value: 'elsewhere' });
  if (copy.metadata?.annotations) copy.metadata.annotations['veil.dev/bootstrap-policy'] = '{"spec":{}}';
  const again = injectInMl(copy, { bootstrapPolicy: { spec: {} } });
  assert.equal(again.outcome, 'injected');
  assert.deepEqual(again.outcome === 'injected' ? again.pod : undefined, out);
  const same = injectInMl(out, { bootstrapPolicy: { spec: {} } });
  assert.equal(same.outcome, 'unchanged');
});

test('a pod labelled injected that is not opted in is refused, even with a Veil sidecar', () => {
  const out = injected(modelPod());
  for (const [annotation, namespaceOptIn] of [
    [undefined, false],
    ['false', false],
    ['false', true],
  ] as const) {
    const copy = structuredClone(out);
    const annotations = copy.metadata?.annotations ?? {};
    if (annotation === undefined) delete annotations['veil.dev/inject'];
    else annotations['veil.dev/inject'] = annotation;
    const result = injectInMl(copy, { namespaceOptIn });
    assert.equal(result.outcome, 'denied', `${annotation} in a namespace opted in: ${namespaceOptIn}`);
    assert.match(result.outcome === 'denied' ? result.message : '', /is not opted in to injection/);
  }
});

test('a look-alike sidecar of another image does not count as injected', () => {
  const out = injected(modelPod());
  sidecarOf(out).image = 'registry.example.com/someone/veil-sidecar:0.1.0';
  const again = injectInMl(out);
  assert.equal(again.outcome, 'denied');
});

test('a pod declaring no port is refused, naming the annotation', () => {
  const pod = modelPod();
  const model = pod.spec?.containers[0];
  if (model) model.ports = undefined;
  const result = injectInMl(pod);
  assert.equal(result.outcome, 'denied');
  assert.match(result.outcome === 'denied' ? result.message : '', /^veil\.dev\/upstream-port: /);
});

test('a UDP upstream port is refused', () => {
  const pod = modelPod({ 'veil.dev/inject': 'true', 'veil.dev/upstream-port': 'dns' });
  pod.spec?.containers[0]?.ports?.push({ name: 'dns', containerPort: 53, protocol: 'UDP' });
  const result = injectInMl(pod);
  assert.equal(result.outcome, 'denied');
  assert.match(result.outcome === 'denied' ? result.message : '', /UDP/);
});

test('names the sidecar needs are refused when the pod already uses them', () => {
  const withVolume = modelPod();
  if (withVolume.spec) withVolume.spec.volumes = [{ name: 'veil-spool', emptyDir: {} }];
  const withContainer = modelPod();
  withContainer.spec?.containers.push({ name: 'veil-proxy', image: 'example/proxy:1' });
  const withPortName = modelPod();
  withPortName.spec?.containers[0]?.ports?.push({ name: 'veil-admin', containerPort: 9000 });
  for (const pod of [withVolume, withContainer, withPortName]) {
    const result = injectInMl(pod);
    assert.equal(result.outcome, 'denied');
    assert.match(result.outcome === 'denied' ? result.message : '', /reserved for the Veil sidecar/);
  }
});

function refusal(pod: V1Pod, using: InjectionSettings = settings): string {
  const result = injectInMl(pod, { settings: using });
  assert.equal(result.outcome, 'denied');
  return result.outcome === 'denied' ? result.message : '';
}

test("a container that mounts one of the sidecar's volumes is refused, whatever its kind", () => {
  // The volume is left out of the pod: injection would add it and the mount would resolve.
  const kinds: Record<string, (pod: V1Pod, container: V1Container) => void> = {
    container: (pod, c) => pod.spec?.containers.push(c),
    'init container': (pod, c) => {
      if (pod.spec) pod.spec.initContainers = [c];
    },
    'ephemeral container': (pod, c) => {
      if (pod.spec) pod.spec.ephemeralContainers = [c];
    },
  };
  for (const volume of Object.values(sidecarVolumeNames)) {
    for (const [kind, add] of Object.entries(kinds)) {
      const mounting = modelPod();
      add(mounting, {
        name: 'thief',
        image: 'busybox',
        volumeMounts: [{ name: volume, mountPath: '/steal' }],
      });
      const attaching = modelPod();
      add(attaching, {
        name: 'thief',
        image: 'busybox',
        volumeDevices: [{ name: volume, devicePath: '/dev/x' }],
      });
      for (const pod of [mounting, attaching]) {
        assert.match(refusal(pod), new RegExp(`^container "thief" mounts volume "${volume}"`), kind);
      }
    }
  }
  const model = modelPod();
  const modelContainer = model.spec?.containers[0];
  if (modelContainer) modelContainer.volumeMounts = [{ name: 'veil-signing-key', mountPath: '/steal' }];
  assert.match(refusal(model), /^container "model" mounts volume "veil-signing-key"/);
});

test('a pod publishing any port on the node (hostPort) is refused', () => {
  const onModel = modelPod();
  const port = onModel.spec?.containers[0]?.ports?.[0];
  if (port) port.hostPort = 8080;
  assert.match(refusal(onModel), /^container "model" publishes port 8080 on the node \(hostPort 8080\)/);
  const onOther = modelPod();
  onOther.spec?.containers.push({
    name: 'metrics',
    image: 'x',
    ports: [{ containerPort: 9100, hostPort: 19100 }],
  });
  assert.match(refusal(onOther), /^container "metrics" publishes port 9100 on the node \(hostPort 19100\)/);
});

/** The pod's containers of every kind, each given to `change` in a pod of its own. */
function withEachContainerKind(change: (container: V1Container) => void): Array<[string, V1Pod]> {
  const regular = modelPod();
  const init = modelPod();
  if (init.spec) init.spec.initContainers = [{ name: 'setup', image: 'busybox' }];
  const ephemeral = modelPod();
  if (ephemeral.spec) ephemeral.spec.ephemeralContainers = [{ name: 'debugger', image: 'busybox' }];
  const pods: Array<[string, V1Pod, V1Container | undefined]> = [
    ['model', regular, regular.spec?.containers[0]],
    ['setup', init, init.spec?.initContainers?.[0]],
    ['debugger', ephemeral, ephemeral.spec?.ephemeralContainers?.[0]],
  ];
  return pods.map(([name, pod, container]) => {
    assert.ok(container, name);
    change(container);
    return [name, pod];
  });
}

test("a hostPath volume is refused: the sidecar's spool and key live in the node's directories", () => {
  const pod = modelPod();
  if (pod.spec) pod.spec.volumes = [{ name: 'kubelet', hostPath: { path: '/var/lib/kubelet/pods' } }];
  const model = pod.spec?.containers[0];
  if (model) model.volumeMounts = [{ name: 'kubelet', mountPath: '/host' }];
  assert.match(refusal(pod), /^volume "kubelet" is a hostPath volume/);
});

test('a privileged container is refused, whatever its kind', () => {
  for (const [name, pod] of withEachContainerKind((c) => {
    c.securityContext = { privileged: true };
  })) {
    assert.match(refusal(pod), new RegExp(`^container "${name}" is privileged`), name);
  }
  const unprivileged = modelPod();
  const model = unprivileged.spec?.containers[0];
  if (model) model.securityContext = { privileged: false };
  injected(unprivileged);
});

test('capabilities added beyond Pod Security baseline are refused, however they are spelt', () => {
  for (const [name, pod] of withEachContainerKind((c) => {
    c.securityContext = { capabilities: { add: ['CAP_SYS_ADMIN', 'NET_ADMIN', 'CHOWN'] } };
  })) {
    assert.match(
      refusal(pod),
      new RegExp(
        `^container "${name}" adds capabilities beyond Pod Security baseline \\(CAP_SYS_ADMIN, NET_ADMIN\\)`,
      ),
      name,
    );
  }
  const lowerCase = modelPod();
  const lowerModel = lowerCase.spec?.containers[0];
  if (lowerModel) lowerModel.securityContext = { capabilities: { add: ['sys_admin'] } };
  assert.match(refusal(lowerCase), /\(sys_admin\)/);
  assert.doesNotMatch(refusal(lowerCase), /service mesh/);
  const meshInit = modelPod();
  if (meshInit.spec) meshInit.spec.initContainers = [];
  meshInit.spec?.initContainers?.push({
    name: 'istio-init',
    image: 'istio/proxyv2',
    securityContext: { capabilities: { add: ['NET_ADMIN', 'NET_RAW'] } },
  });
  assert.match(refusal(meshInit), /^container "istio-init" .*: run the mesh in its CNI mode\)$/);
  const baseline = modelPod();
  const model = baseline.spec?.containers[0];
  if (model)
    model.securityContext = {
      capabilities: { add: ['NET_BIND_SERVICE', 'CAP_CHOWN', 'SYS_PTRACE'], drop: ['ALL'] },
    };
  injected(baseline);
});

test('an unmasked /proc is refused', () => {
  for (const [name, pod] of withEachContainerKind((c) => {
    c.securityContext = { procMount: 'Unmasked' };
  })) {
    assert.match(refusal(pod), new RegExp(`^container "${name}" asks for an unmasked /proc`), name);
  }
  const masked = modelPod();
  const model = masked.spec?.containers[0];
  if (model) model.securityContext = { procMount: 'Default' };
  injected(masked);
});

test("a pod in the node's IPC namespace is refused", () => {
  const pod = modelPod();
  if (pod.spec) pod.spec.hostIPC = true;
  assert.match(refusal(pod), /hostIPC/);
});

test('a host alias for a host the sidecar connects to is refused; others are not', () => {
  const aliased = (hostnames: string[]): V1Pod => {
    const pod = modelPod();
    if (pod.spec) pod.spec.hostAliases = [{ ip: '10.0.0.9', hostnames: ['db.internal', ...hostnames] }];
    return pod;
  };
  const guarded = {
    'veil-injector.veil-system.svc': 'veil-injector.veil-system.svc',
    'VEIL-INJECTOR.veil-system.svc.': 'veil-injector.veil-system.svc',
    'veil-injector.veil-system.svc.cluster.local': 'veil-injector.veil-system.svc',
    'minio.veil-system.svc': 'minio.veil-system.svc',
    'veil-evidence.minio.veil-system.svc': 'minio.veil-system.svc',
  };
  for (const [hostname, host] of Object.entries(guarded)) {
    assert.match(
      refusal(aliased([hostname])),
      new RegExp(
        `^hostAliases names "${hostname.replaceAll('.', '\\.')}", which would redirect the Veil sidecar's connections to ${host.replaceAll('.', '\\.')}:`,
      ),
      hostname,
    );
  }
  injected(aliased(['minio.example.com']));
  const onAws = injectionSettingsSchema.parse({
    ...testSettings,
    s3: { bucket: 'veil-evidence', region: 'eu-west-1', credentialsSecret: { name: 'veil-s3' } },
  });
  assert.match(refusal(aliased(['veil-evidence.s3.eu-west-1.amazonaws.com']), onAws), /to amazonaws\.com:/);
});

test('a pod choosing its name servers or search list is refused; DNS options are not', () => {
  const withDns = (change: (spec: NonNullable<V1Pod['spec']>) => void): V1Pod => {
    const pod = modelPod();
    if (pod.spec) change(pod.spec);
    return pod;
  };
  const refused = [
    [
      withDns((s) =>
        Object.assign(s, { dnsPolicy: 'None', dnsConfig: { options: [{ name: 'ndots', value: '1' }] } }),
      ),
      /^dnsPolicy None/,
    ],
    [
      withDns((s) => Object.assign(s, { dnsConfig: { nameservers: ['10.0.0.53'] } })),
      /^dnsConfig\.nameservers/,
    ],
    [
      withDns((s) => Object.assign(s, { dnsConfig: { searches: ['attacker.example'] } })),
      /^dnsConfig\.searches/,
    ],
  ] as const;
  for (const [pod, message] of refused) assert.match(refusal(pod), message);
  injected(
    withDns((s) =>
      Object.assign(s, {
        dnsPolicy: 'ClusterFirst',
        dnsConfig: { options: [{ name: 'ndots', value: '2' }] },
      }),
    ),
  );
});

test("a termination grace shorter than the sidecar's close grace plus 10 s is refused, saying what to set", () => {
  const withGrace = (seconds: number | undefined): V1Pod => {
    const pod = modelPod();
    if (pod.spec && seconds !== undefined) pod.spec.terminationGracePeriodSeconds = seconds;
    return pod;
  };
  for (const seconds of [0, 29]) {
    const message = refusal(withGrace(seconds));
    assert.match(
      message,
      new RegExp(`^the pod sets terminationGracePeriodSeconds to ${seconds}, below the 30 s`),
    );
    assert.match(message, /set terminationGracePeriodSeconds to 30 or more$/);
  }
  injected(withGrace(30));
  injected(withGrace(undefined));
  const longClose = injectionSettingsSchema.parse({
    ...testSettings,
    tuning: { auditCloseGraceSeconds: 40 },
  });
  assert.match(
    refusal(withGrace(undefined), longClose),
    /^the pod leaves terminationGracePeriodSeconds unset \(30 s\), below the 50 s/,
  );
  assert.match(refusal(withGrace(49), longClose), /below the 50 s/);
  const result = injectInMl(withGrace(50), { settings: longClose });
  assert.equal(result.outcome, 'injected', result.outcome === 'denied' ? result.message : '');
  assert.equal(unsetGraceRefused(injectionSettingsSchema.parse(testSettings)), undefined);
  assert.match(
    unsetGraceRefused(longClose) ?? '',
    /needs a termination grace of 50 s: opted-in pods that leave terminationGracePeriodSeconds unset \(30 s\) are refused/,
  );
});

test('another container declaring the port name the proxy takes over is refused, naming both', () => {
  for (const place of ['containers', 'initContainers'] as const) {
    const pod = modelPod();
    const other = { name: 'exporter', image: 'x', ports: [{ name: 'http', containerPort: 9100 }] };
    if (pod.spec) pod.spec[place] = [...(pod.spec[place] ?? []), other];
    assert.match(refusal(pod), /^containers "model" and "exporter" both declare a port named "http"/, place);
  }
  const distinct = modelPod();
  distinct.spec?.containers.push({
    name: 'exporter',
    image: 'x',
    ports: [{ name: 'metrics', containerPort: 9100 }],
  });
  injected(distinct);
});

test('an existing default-container annotation is kept with plain sidecars', () => {
  const pod = modelPod({ 'veil.dev/inject': 'true', 'kubectl.kubernetes.io/default-container': 'other' });
  const out = injected(pod, false);
  assert.equal(out.metadata?.annotations?.['kubectl.kubernetes.io/default-container'], 'other');
  assert.equal(out.spec?.containers[0]?.name, 'veil-proxy');
});
