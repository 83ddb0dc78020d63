// The injector process's parts against the real API server: the pod webhook
// registered the way the chart registers it, the controller publishing its
// public key, and the pull endpoint with TokenReview.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  AuthenticationV1Api,
  CoreV1Api,
  PatchStrategy,
  setHeaderOptions,
  type V1EphemeralContainer,
} from '@kubernetes/client-node';
import { policyHash, policySpecSchema } from '@veil/core';
import { loadControllerKey, pullAudience, type RunningInjector } from '@veil/injector';
import { Agent, request } from 'undici';
import { type ControlPlane, startControlPlane } from '../../harness/index.ts';
import {
  applyPolicy,
  createServiceAccount,
  eventually,
  freshNamespace,
  installCrds,
  namespaceUser,
} from './support/cluster.ts';
import {
  deleteWebhook,
  ensureInjectorNamespace,
  type InjectorFiles,
  injectorFiles,
  modelPod,
  registerWebhook,
  startTestInjector,
  waitForWebhook,
} from './support/injector.ts';

let cp: ControlPlane;
let injector: RunningInjector;
let files: InjectorFiles;
let webhookName: string;

before(async () => {
  cp = await startControlPlane();
  await installCrds(cp);
  await ensureInjectorNamespace(cp);
  files = await injectorFiles(cp);
  injector = await startTestInjector(cp, files);
  webhookName = await registerWebhook(cp, injector.webhook.url);
});
after(async () => {
  if (webhookName) await deleteWebhook(cp, webhookName).catch(() => undefined);
  await injector?.close();
  await cp?.stop();
});

/** A credential: kept by the controller, never written into a pod or sent to a sidecar. */
const notifyUrl = 'https://hooks.slack.example/services/T0/B0/secret';
const spec = {
  masking: { rules: [{ name: 'emails', detectors: ['email'], operator: 'redact', scopes: ['forward'] }] },
  approvals: {
    rules: [
      {
        name: 'bulk',
        when: { minInputs: 100 },
        approvers: { groups: ['leads'] },
        notify: { url: notifyUrl },
      },
    ],
  },
};

test('an opted-in pod is stored with the sidecar and the bootstrap policy; another is stored unchanged', async () => {
  const namespace = await freshNamespace(cp, 'inject');
  await applyPolicy(cp, namespace, 'default', spec);
  await eventually('the policy in the cache', async () => injector.controller.policy(namespace, 'default'));
  await waitForWebhook(cp, namespace);
  const core = cp.kubeConfig().makeApiClient(CoreV1Api);

  await core.createNamespacedPod({ namespace, body: modelPod('opted-in', { 'veil.dev/inject': 'true' }) });
  await core.createNamespacedPod({ namespace, body: modelPod('plain') });

  const injected = await core.readNamespacedPod({ namespace, name: 'opted-in' });
  assert.equal(injected.metadata?.labels?.['veil.dev/injected'], 'true');
  const sidecar = injected.spec?.initContainers?.find((c) => c.name === 'veil-proxy');
  assert.ok(sidecar, 'the sidecar is a native sidecar');
  assert.equal(sidecar.restartPolicy, 'Always');
  assert.deepEqual(
    sidecar.ports?.map((p) => [p.name, p.containerPort]),
    [
      ['http', 15080],
      ['veil-admin', 15090],
    ],
  );
  const bootstrap = JSON.parse(injected.metadata?.annotations?.['veil.dev/bootstrap-policy'] ?? 'null');
  assert.equal(bootstrap.name, 'default');
  assert.equal(policyHash(policySpecSchema.parse(bootstrap.spec)), policyHash(policySpecSchema.parse(spec)));
  assert.ok(!JSON.stringify(injected).includes(notifyUrl), 'no notification URL in the pod');
  const kept = policySpecSchema.parse(injector.controller.policy(namespace, 'default')?.spec);
  assert.equal(
    kept.approvals.rules[0]?.notify?.url,
    notifyUrl,
    'the controller keeps it for its notifications',
  );

  const plain = await core.readNamespacedPod({ namespace, name: 'plain' });
  assert.equal(plain.metadata?.labels?.['veil.dev/injected'], undefined);
  assert.equal(plain.spec?.initContainers, undefined);
  assert.deepEqual(
    plain.spec?.containers.map((c) => c.name),
    ['model'],
  );
});

test('a pod in a namespace labelled for injection is injected; one opting out is not', async () => {
  const namespace = await freshNamespace(cp, 'label', { 'veil.dev/injection': 'enabled' });
  const core = cp.kubeConfig().makeApiClient(CoreV1Api);
  await eventually(
    'a namespace-labelled pod injected',
    async () => {
      const name = `by-label-${Math.random().toString(36).slice(2, 7)}`;
      const stored = await core.createNamespacedPod({ namespace, body: modelPod(name) });
      return stored.metadata?.labels?.['veil.dev/injected'] === 'true' ? true : undefined;
    },
    30_000,
    200,
  );
  const out = await core.createNamespacedPod({
    namespace,
    body: modelPod('opted-out', { 'veil.dev/inject': 'false' }),
  });
  assert.equal(out.metadata?.labels?.['veil.dev/injected'], undefined);
  assert.equal(out.spec?.initContainers, undefined);
});

/** Whether client-node's error carries the API server's refusal matching `pattern`. */
function refusedWith(pattern: RegExp) {
  return (error: unknown) => {
    const status = JSON.parse(String((error as { body?: unknown }).body)) as { message?: string };
    return pattern.test(status.message ?? '');
  };
}

/**
 * A CONNECT as kubectl would open it, as the admin. Admission runs before the
 * API server looks for the pod's node; with no kubelet here, a request it
 * admits then fails for want of one.
 */
async function connect(
  namespace: string,
  pod: string,
  subresource: 'exec' | 'attach',
  container?: string,
): Promise<{ status: number; message: string }> {
  const options: { ca?: Buffer; cert?: Buffer; key?: Buffer } = {};
  await cp.kubeConfig().applyToHTTPSOptions(options);
  const dispatcher = new Agent({ connect: { ca: options.ca, cert: options.cert, key: options.key } });
  const query = new URLSearchParams({ stdout: 'true', stderr: 'true' });
  if (subresource === 'exec') query.append('command', 'node');
  if (container !== undefined) query.set('container', container);
  try {
    const response = await request(
      `${cp.server}/api/v1/namespaces/${namespace}/pods/${pod}/${subresource}?${query}`,
      { method: 'POST', dispatcher },
    );
    const body = (await response.body.json()) as { message?: string };
    return { status: response.statusCode, message: body.message ?? '' };
  } finally {
    await dispatcher.close();
  }
}

test("an injected pod's sidecar is out of reach of exec, attach, debug containers and bindings; its model is not", async () => {
  const namespace = await freshNamespace(cp, 'reach');
  await waitForWebhook(cp, namespace);
  const core = cp.kubeConfig().makeApiClient(CoreV1Api);
  const name = 'embedder';
  const pod = await core.createNamespacedPod({
    namespace,
    body: modelPod(name, { 'veil.dev/inject': 'true' }),
  });
  assert.equal(pod.metadata?.labels?.['veil.dev/injected'], 'true');

  for (const subresource of ['exec', 'attach'] as const) {
    const refused = await connect(namespace, name, subresource, 'veil-proxy');
    assert.equal(refused.status, 403, refused.message);
    assert.match(refused.message, /"exec\.pods\.veil\.dev" denied the request/);
    assert.match(refused.message, new RegExp(`pods/${subresource} into container veil-proxy is refused`));
  }
  // The model, named or as the pod's only container, is admitted (and fails only
  // for want of a node).
  for (const container of ['model', undefined]) {
    const admitted = await connect(namespace, name, 'exec', container);
    assert.equal(admitted.status, 400, admitted.message);
    assert.match(admitted.message, /does not have a host assigned/);
  }

  const debug = (container: V1EphemeralContainer) =>
    core.replaceNamespacedPodEphemeralcontainers({
      namespace,
      name,
      body: { ...pod, spec: { containers: [], ...pod.spec, ephemeralContainers: [container] } },
    });
  await assert.rejects(
    debug({ name: 'debugger', image: 'busybox', targetContainerName: 'veil-proxy' }),
    refusedWith(/ephemeral container debugger targets veil-proxy/),
  );
  await assert.rejects(
    debug({
      name: 'debugger',
      image: 'busybox',
      volumeMounts: [{ name: 'veil-signing-key', mountPath: '/k' }],
    }),
    refusedWith(/ephemeral container debugger mounts veil-signing-key/),
  );
  const debugged = await debug({ name: 'debugger', image: 'busybox', targetContainerName: 'model' });
  assert.deepEqual(
    debugged.spec?.ephemeralContainers?.map((c) => c.name),
    ['debugger'],
  );

  const stored = await core.readNamespacedPod({ namespace, name });
  const annotations = stored.metadata?.annotations ?? {};
  const binding = (metadata: { annotations?: Record<string, string>; labels?: Record<string, string> }) => ({
    metadata: { name, ...metadata },
    target: { apiVersion: 'v1', kind: 'Node', name: 'node-1' },
  });
  await assert.rejects(
    core.createNamespacedPodBinding({
      namespace,
      name,
      body: binding({ annotations: { 'veil.dev/bootstrap-policy': '{"name":"lenient","spec":{}}' } }),
    }),
    refusedWith(/"binding\.pods\.veil\.dev" denied the request: annotation veil\.dev\/bootstrap-policy/),
  );
  // The older bindings resource binds the same way.
  await assert.rejects(
    core.createNamespacedBinding({
      namespace,
      body: binding({ annotations: { 'veil.dev/policy': 'lenient' } }),
    }),
    refusedWith(/annotation veil\.dev\/policy is set by the Veil injector/),
  );
  const unbound = await core.readNamespacedPod({ namespace, name });
  assert.equal(unbound.spec?.nodeName, undefined);
  assert.deepEqual(unbound.metadata?.annotations, annotations);

  await core.createNamespacedPodBinding({
    namespace,
    name,
    body: binding({ annotations: { 'scheduler.example.com/score': '7' } }),
  });
  const bound = await core.readNamespacedPod({ namespace, name });
  assert.equal(bound.spec?.nodeName, 'node-1');
  assert.equal(
    bound.metadata?.annotations?.['veil.dev/bootstrap-policy'],
    annotations['veil.dev/bootstrap-policy'],
  );
});

test('a binding cannot forge the injected label on a pod Veil did not inject', async () => {
  const namespace = await freshNamespace(cp, 'forge');
  await waitForWebhook(cp, namespace);
  const core = cp.kubeConfig().makeApiClient(CoreV1Api);
  await core.createNamespacedPod({ namespace, body: modelPod('plain') });
  await assert.rejects(
    core.createNamespacedPodBinding({
      namespace,
      name: 'plain',
      body: {
        metadata: { name: 'plain', labels: { 'veil.dev/injected': 'true' } },
        target: { apiVersion: 'v1', kind: 'Node', name: 'node-1' },
      },
    }),
    refusedWith(/cannot be added to a pod it did not inject/),
  );
  const stored = await core.readNamespacedPod({ namespace, name: 'plain' });
  assert.equal(stored.metadata?.labels?.['veil.dev/injected'], undefined);
});

test('the leader publishes a copy of its public key, for pods injected by earlier releases', async () => {
  const namespace = await freshNamespace(cp, 'key');
  await applyPolicy(cp, namespace, 'default', spec);
  const core = cp.kubeConfig().makeApiClient(CoreV1Api);
  const configMap = await eventually('the key ConfigMap', async () => {
    try {
      return await core.readNamespacedConfigMap({ namespace, name: 'veil-controller-key' });
    } catch {
      return undefined;
    }
  });
  const jwk = JSON.parse(configMap.data?.['jwk.json'] ?? '{}');
  assert.deepEqual(Object.keys(jwk).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x']);
  assert.equal(jwk.crv, 'Ed25519');
  assert.equal(jwk.d, undefined, 'never the private part');
});

test("an injected pod carries the controller's key, which only the injector's identity can change", async () => {
  const namespace = await freshNamespace(cp, 'trust');
  await waitForWebhook(cp, namespace);
  const core = cp.kubeConfig().makeApiClient(CoreV1Api);
  const pod = await core.createNamespacedPod({
    namespace,
    body: modelPod('embedder', {
      'veil.dev/inject': 'true',
      // Forged at creation: the webhook writes its own in their place.
      'veil.dev/controller-key': '{"kty":"OKP","crv":"Ed25519","x":"dGVuYW50"}',
    }),
  });
  const ownKey = JSON.stringify((await loadControllerKey(files.signingKeyFile)).publicJwk);
  assert.equal(pod.metadata?.annotations?.['veil.dev/controller-key'], ownKey);
  const volume = pod.spec?.volumes?.find((v) => v.name === 'veil-controller-key');
  assert.equal(volume?.projected, undefined, 'no ConfigMap or Secret of the namespace');
  assert.deepEqual(
    volume?.downwardAPI?.items?.map((i) => i.fieldRef?.fieldPath),
    ["metadata.annotations['veil.dev/controller-key']", "metadata.annotations['veil.dev/controller-ca']"],
  );

  // A namespace editor (the usual "edit" role may update pods).
  const editor = await namespaceUser(cp, namespace, 'edit-pods', [
    { apiGroups: [''], resources: ['pods'], verbs: ['get', 'update', 'patch'] },
  ]);
  const annotate = (api: CoreV1Api, annotations: Record<string, string>) =>
    api.patchNamespacedPod(
      { namespace, name: 'embedder', body: { metadata: { annotations } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  const tenantKey = '{"kty":"OKP","crv":"Ed25519","x":"dGVuYW50LWtleQ"}';
  await assert.rejects(
    annotate(editor, { 'veil.dev/controller-key': tenantKey }),
    refusedWith(/annotation veil\.dev\/controller-key is set by the Veil injector/),
  );
  await assert.rejects(
    annotate(editor, {
      'veil.dev/controller-ca': '-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n',
    }),
    refusedWith(/annotation veil\.dev\/controller-ca is set by the Veil injector/),
  );
  // The injector runs as the admin here: its identity may, as the leader does on a rotation.
  const changed = await annotate(core, { 'veil.dev/controller-key': tenantKey });
  assert.equal(changed.metadata?.annotations?.['veil.dev/controller-key'], tenantKey);
  // And the leader puts its own key back on the running pod.
  await eventually('the key patched back', async () => {
    const now = await core.readNamespacedPod({ namespace, name: 'embedder' });
    return now.metadata?.annotations?.['veil.dev/controller-key'] === ownKey ? true : undefined;
  });
});

test('a sidecar pulls its policy with a service-account token of its own namespace only', async () => {
  const namespace = await freshNamespace(cp, 'pull');
  const other = await freshNamespace(cp, 'pull-other');
  await applyPolicy(cp, namespace, 'default', spec);
  // RE2 has no look-behind: valid for the API server's schema, invalid for Veil.
  await applyPolicy(cp, namespace, 'broken', {
    masking: {
      rules: [
        { name: 'x', patterns: [{ name: 'x', regex: '(?<=a)b' }], operator: 'redact', scopes: ['forward'] },
      ],
    },
  });
  await eventually('the policy in the cache', async () => injector.controller.policy(namespace, 'default'));
  await eventually('the broken policy in the cache', async () =>
    (await injector.controller.lookup(namespace, 'broken')).kind === 'unavailable' ? true : undefined,
  );
  const tokenFor = await createServiceAccount(cp, namespace, 'embedder');
  const token = await tokenFor(pullAudience);
  const wrongAudience = await tokenFor('veil');
  const dispatcher = new Agent({
    connect: { ca: await import('node:fs/promises').then((fs) => fs.readFile(cp.caCert, 'utf8')) },
  });
  const pull = async (path: string, bearer?: string) => {
    const response = await request(`${injector.pull.url}${path}`, {
      dispatcher,
      headers: bearer ? { authorization: `Bearer ${bearer}` } : {},
    });
    return { status: response.statusCode, body: (await response.body.json()) as Record<string, unknown> };
  };
  try {
    const ok = await pull(`/v1/policies/${namespace}/default`, token);
    assert.equal(ok.status, 200);
    assert.equal(ok.body.name, 'default');
    assert.equal(ok.body.hash, policyHash(policySpecSchema.parse(spec)));
    // The API server applies the CRD's defaults, so the stored spec is the full one.
    assert.equal(policyHash(policySpecSchema.parse(ok.body.spec)), ok.body.hash);
    assert.ok(!JSON.stringify(ok.body).includes(notifyUrl), 'no notification URL in a pull');
    assert.equal((await pull(`/v1/policies/${other}/default`, token)).status, 403);
    assert.equal((await pull(`/v1/policies/${namespace}/default`)).status, 401);
    assert.equal((await pull(`/v1/policies/${namespace}/default`, wrongAudience)).status, 401);
    // A policy that does not exist says so: on that answer a sidecar drops what it has.
    assert.deepEqual(await pull(`/v1/policies/${namespace}/missing`, token), {
      status: 404,
      body: { status: 'absent', error: `EmbeddingPolicy ${namespace}/missing does not exist` },
    });
    // One that exists with no valid version is no such answer: the sidecar keeps what it has.
    assert.deepEqual(await pull(`/v1/policies/${namespace}/broken`, token), {
      status: 503,
      body: { error: `this replica knows no valid version of ${namespace}/broken; retry` },
    });
    // The API server agrees the token is good: the 401 above is the audience, not the token.
    const review = await cp
      .kubeConfig()
      .makeApiClient(AuthenticationV1Api)
      .createTokenReview({ body: { spec: { token: wrongAudience ?? '' } } });
    assert.equal(review.status?.authenticated, true);
  } finally {
    await dispatcher.close();
  }
});

test('a controller limited to some namespaces sees policies there only', async () => {
  const watched = await freshNamespace(cp, 'watched');
  const elsewhere = await freshNamespace(cp, 'elsewhere');
  await applyPolicy(cp, watched, 'default', spec);
  await applyPolicy(cp, elsewhere, 'default', spec);
  const limited = await startTestInjector(cp, await injectorFiles(cp), {
    namespaces: watched,
    leaseName: 'veil-controller-limited',
  });
  try {
    assert.ok(limited.controller.policy(watched, 'default'), 'listed before start resolves');
    assert.equal(limited.controller.policy(elsewhere, 'default'), undefined);
    await applyPolicy(cp, watched, 'second', spec);
    await eventually('a new policy watched', async () => limited.controller.policy(watched, 'second'));
  } finally {
    await limited.close();
  }
});
