import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { V1Pod } from '@kubernetes/client-node';
import { inject } from '../../src/webhook/inject.ts';
import {
  type AdmissionReviewRequest,
  admissionReviewResponseSchema,
  type ReviewDependencies,
  reviewPodAdmission,
} from '../../src/webhook/review.ts';
import { injectionSettingsSchema } from '../../src/webhook/settings.ts';
import { podReview } from './support/review.ts';
import { injectorUsername, testSettings, testTrust } from './support/settings.ts';

const settings = injectionSettingsSchema.parse(testSettings);

type Calls = { namespaces: string[]; policies: string[] };

function dependencies(labels: Record<string, string> = {}): ReviewDependencies & { calls: Calls } {
  const calls: Calls = { namespaces: [], policies: [] };
  return {
    calls,
    settings,
    namespaceLabels: async (namespace) => {
      calls.namespaces.push(namespace);
      return labels;
    },
    bootstrapPolicy: async (namespace, name) => {
      calls.policies.push(`${namespace}/${name}`);
      return { spec: {} };
    },
    controllerTrust: () => testTrust,
    trustWriters: [injectorUsername],
  };
}

function pod(annotations?: Record<string, string>): V1Pod {
  return {
    metadata: { generateName: 'embedder-', ...(annotations === undefined ? {} : { annotations }) },
    spec: {
      containers: [
        { name: 'model', image: 'example/model:1', ports: [{ name: 'http', containerPort: 8080 }] },
      ],
    },
  };
}

test('the response answers the request uid and is a valid AdmissionReview', async () => {
  const review = podReview('ml', pod({ 'veil.dev/inject': 'true' }));
  const { review: response } = await reviewPodAdmission(review, dependencies());
  admissionReviewResponseSchema.parse(response);
  assert.equal(response.response.uid, review.request.uid);
  assert.equal(response.response.patchType, 'JSONPatch');
});

test('a pod that decides for itself never waits on a namespace lookup', async () => {
  for (const annotations of [{ 'veil.dev/inject': 'true' }, { 'veil.dev/inject': 'false' }]) {
    const deps = dependencies();
    await reviewPodAdmission(podReview('ml', pod(annotations)), deps);
    assert.deepEqual(deps.calls.namespaces, []);
  }
});

test('the bootstrap policy is looked up only for a pod being injected, by its policy name', async () => {
  const deps = dependencies();
  await reviewPodAdmission(podReview('web', pod()), deps);
  assert.deepEqual(deps.calls, { namespaces: ['web'], policies: [] });
  await reviewPodAdmission(
    podReview('ml', pod({ 'veil.dev/inject': 'true', 'veil.dev/policy': 'search' })),
    deps,
  );
  assert.deepEqual(deps.calls.policies, ['ml/search']);
});

test('excluded namespaces are not looked up at all', async () => {
  const deps = dependencies({ 'veil.dev/injection': 'enabled' });
  const result = await reviewPodAdmission(podReview('kube-system', pod()), deps);
  assert.deepEqual(deps.calls, { namespaces: [], policies: [] });
  assert.equal(result.review.response.allowed, true);
  assert.equal(result.review.response.patch, undefined);
});

test('with watched namespaces, a pod to inject elsewhere is denied, naming its namespace and the setting', async () => {
  const deps = { ...dependencies({ 'veil.dev/injection': 'enabled' }), watchedNamespaces: ['ml'] };
  for (const annotations of [{ 'veil.dev/inject': 'true' }, undefined]) {
    const { review, outcome } = await reviewPodAdmission(podReview('web', pod(annotations)), deps);
    assert.equal(outcome, 'denied');
    assert.equal(review.response.allowed, false);
    assert.equal(review.response.status?.code, 403);
    assert.match(review.response.status?.message ?? '', /namespace web .*controller\.watchNamespaces/);
  }
  assert.deepEqual(deps.calls.policies, [], 'no bootstrap policy is looked up for a denied pod');

  const optedOut = await reviewPodAdmission(podReview('web', pod({ 'veil.dev/inject': 'false' })), deps);
  assert.equal(optedOut.outcome, 'unchanged');
  const watched = await reviewPodAdmission(podReview('ml', pod({ 'veil.dev/inject': 'true' })), deps);
  assert.equal(watched.outcome, 'injected');
});

test('a failing lookup denies an opted-in pod instead of admitting it unaudited', async () => {
  const deps = dependencies();
  deps.namespaceLabels = async () => {
    throw new Error('namespaces "ml" is forbidden');
  };
  const { review } = await reviewPodAdmission(podReview('ml', pod()), deps);
  assert.equal(review.response.allowed, false);
  assert.equal(review.response.status?.code, 500);
  assert.match(review.response.status?.message ?? '', /forbidden/);

  const failingPolicy = dependencies();
  failingPolicy.bootstrapPolicy = async () => {
    throw new Error('timeout');
  };
  const second = await reviewPodAdmission(podReview('ml', pod({ 'veil.dev/inject': 'true' })), failingPolicy);
  assert.equal(second.review.response.allowed, false);
});

test('a pod that does not involve Veil is admitted even when lookups fail', async () => {
  const deps = dependencies();
  deps.bootstrapPolicy = async () => {
    throw new Error('unreachable');
  };
  const { review } = await reviewPodAdmission(podReview('web', pod({ 'veil.dev/inject': 'false' })), deps);
  assert.equal(review.response.allowed, true);
});

test('the review namespace wins over a missing one in the pod', async () => {
  const result = await reviewPodAdmission(
    podReview('ml', pod({ 'veil.dev/inject': 'true' })),
    dependencies(),
  );
  assert.equal(result.outcome, 'injected');
});

test('not a pod, a DELETE, a subresource unguarded or a CONNECT other than exec and attach: allowed untouched', async () => {
  const deps = dependencies();
  const notPod = podReview('ml', pod({ 'veil.dev/inject': 'true' }));
  notPod.request.kind = { group: 'apps', version: 'v1', kind: 'Deployment' };
  const deletion = podReview('ml', pod(), 'DELETE');
  const before = injectedPod();
  const after = structuredClone(before);
  if (after.metadata?.labels) delete after.metadata.labels['veil.dev/injected'];
  const subresource = podReview('ml', after, 'UPDATE', before);
  subresource.request.subResource = 'resize';
  const portForward = connectReview('portforward', { kind: 'PodPortForwardOptions', ports: [8080] });
  for (const review of [notPod, deletion, subresource, portForward]) {
    const { review: response, outcome } = await reviewPodAdmission(review, deps);
    assert.equal(outcome, 'ignored');
    assert.deepEqual(response.response, { uid: review.request.uid, allowed: true });
  }
});

test('a CREATE without a usable pod is denied', async () => {
  const review = podReview('ml', pod());
  review.request.object = { metadata: {}, spec: { containers: [] } };
  const { review: response } = await reviewPodAdmission(review, dependencies());
  assert.equal(response.response.allowed, false);
  assert.equal(response.response.status?.code, 400);
});

function injectedPod(): V1Pod {
  const result = inject({
    pod: pod({ 'veil.dev/inject': 'true' }),
    namespace: 'ml',
    namespaceOptIn: false,
    settings,
    bootstrapPolicy: { spec: { access: { rules: [] } } },
    trust: testTrust,
  });
  assert.equal(result.outcome, 'injected');
  return result.outcome === 'injected' ? result.pod : {};
}

test("an UPDATE rewriting an injected pod's bootstrap policy is refused", async () => {
  const before = injectedPod();
  const after = structuredClone(before);
  if (after.metadata?.annotations) after.metadata.annotations['veil.dev/bootstrap-policy'] = '{"spec":{}}';
  const { review } = await reviewPodAdmission(podReview('ml', after, 'UPDATE', before), dependencies());
  assert.equal(review.response.allowed, false);
  assert.match(review.response.status?.message ?? '', /veil\.dev\/bootstrap-policy/);
});

test("an UPDATE switching an injected pod's policy is refused", async () => {
  // The controller would push the new policy while the sidecar pulls the one it was injected with.
  const before = injectedPod();
  const named = structuredClone(before);
  if (named.metadata?.annotations) named.metadata.annotations['veil.dev/policy'] = 'lenient';
  const added = await reviewPodAdmission(podReview('ml', named, 'UPDATE', before), dependencies());
  assert.equal(added.review.response.allowed, false);
  assert.match(added.review.response.status?.message ?? '', /veil\.dev\/policy/);

  const renamed = structuredClone(named);
  if (renamed.metadata?.annotations) renamed.metadata.annotations['veil.dev/policy'] = 'default';
  const changed = await reviewPodAdmission(podReview('ml', renamed, 'UPDATE', named), dependencies());
  assert.equal(changed.review.response.allowed, false);
});

test("an UPDATE of an injected pod's controller key or CA is refused to anyone but the injector", async () => {
  const before = injectedPod();
  const edited = (key: string, value: string | undefined): V1Pod => {
    const after = structuredClone(before);
    const annotations = after.metadata?.annotations ?? {};
    if (value === undefined) delete annotations[key];
    else annotations[key] = value;
    return after;
  };
  const tenantKey = '{"kty":"OKP","crv":"Ed25519","x":"dGVuYW50LWtleQ","alg":"EdDSA"}';
  const tenantCa = '-----BEGIN CERTIFICATE-----\ntenant\n-----END CERTIFICATE-----\n';
  const changes = [
    ['veil.dev/controller-key', tenantKey],
    ['veil.dev/controller-ca', tenantCa],
    ['veil.dev/controller-ca', undefined],
  ] as const;
  for (const [key, value] of changes) {
    for (const subResource of [undefined, 'status']) {
      // A namespace editor, as any user of the pod's namespace would be.
      const review = podReview('ml', edited(key, value), 'UPDATE', before);
      review.request.userInfo = { username: 'alice', groups: ['system:authenticated'] };
      if (subResource !== undefined) review.request.subResource = subResource;
      const { review: response } = await reviewPodAdmission(review, dependencies());
      assert.equal(response.response.allowed, false, `${key} by alice, subresource ${subResource}`);
      assert.equal(response.response.status?.code, 403);
      assert.match(
        response.response.status?.message ?? '',
        new RegExp(`annotation ${key} is set by the Veil injector`),
      );
    }
    // The leader's rotation patch, under the injector's own identity.
    const rotation = podReview('ml', edited(key, value), 'UPDATE', before);
    rotation.request.userInfo = { username: injectorUsername, groups: ['system:serviceaccounts'] };
    const { review: response } = await reviewPodAdmission(rotation, dependencies());
    assert.equal(response.response.allowed, true, `${key} by the injector`);
  }
  // The injector's identity changes the trust annotations only: the other marks stay guarded.
  const policySwitch = edited('veil.dev/policy', 'lenient');
  const review = podReview('ml', policySwitch, 'UPDATE', before);
  review.request.userInfo = { username: injectorUsername };
  assert.equal((await reviewPodAdmission(review, dependencies())).review.response.allowed, false);
});

test('an UPDATE removing the injected label is refused', async () => {
  const before = injectedPod();
  const after = structuredClone(before);
  if (after.metadata?.labels) delete after.metadata.labels['veil.dev/injected'];
  const { review } = await reviewPodAdmission(podReview('ml', after, 'UPDATE', before), dependencies());
  assert.equal(review.response.allowed, false);
});

test('a status UPDATE is vetted as any update: it stores the labels and annotations it carries', async () => {
  const before = injectedPod();
  const unlabelled = structuredClone(before);
  if (unlabelled.metadata?.labels) delete unlabelled.metadata.labels['veil.dev/injected'];
  const rewritten = structuredClone(before);
  if (rewritten.metadata?.annotations) rewritten.metadata.annotations['veil.dev/bootstrap-policy'] = '{}';
  const renamed = structuredClone(before);
  if (renamed.metadata?.annotations) renamed.metadata.annotations['veil.dev/policy'] = 'lenient';
  for (const [after, message] of [
    [unlabelled, /label veil\.dev\/injected cannot be removed/],
    [rewritten, /veil\.dev\/bootstrap-policy/],
    [renamed, /veil\.dev\/policy/],
  ] as const) {
    const review = podReview('ml', after, 'UPDATE', before);
    review.request.subResource = 'status';
    const { review: response, outcome } = await reviewPodAdmission(review, dependencies());
    assert.equal(outcome, 'denied');
    assert.equal(response.response.status?.code, 403);
    assert.match(response.response.status?.message ?? '', message);
  }

  const ready = structuredClone(before);
  ready.status = { phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }] };
  const review = podReview('ml', ready, 'UPDATE', before);
  review.request.subResource = 'status';
  const { review: response } = await reviewPodAdmission(review, dependencies());
  assert.deepEqual(response.response, { uid: review.request.uid, allowed: true });
});

test('an UPDATE adding the injected label to a pod never injected is refused', async () => {
  const plain = pod();
  const labelled = structuredClone(plain);
  if (labelled.metadata) labelled.metadata.labels = { 'veil.dev/injected': 'true' };
  for (const subResource of [undefined, 'status']) {
    const review = podReview('ml', labelled, 'UPDATE', plain);
    if (subResource !== undefined) review.request.subResource = subResource;
    const { review: response } = await reviewPodAdmission(review, dependencies());
    assert.equal(response.response.allowed, false, `subresource ${subResource}`);
    assert.match(response.response.status?.message ?? '', /cannot be added to a pod it did not inject/);
  }
});

test("an UPDATE of the sidecar's image is refused, as an init container or a plain one", async () => {
  for (const nativeSidecars of [true, false]) {
    const deps = { ...dependencies(), settings: { ...settings, nativeSidecars } };
    const before = inject({
      pod: pod({ 'veil.dev/inject': 'true' }),
      namespace: 'ml',
      namespaceOptIn: false,
      settings: deps.settings,
      bootstrapPolicy: { spec: {} },
      trust: testTrust,
    });
    assert.equal(before.outcome, 'injected');
    if (before.outcome !== 'injected') return;
    const after = structuredClone(before.pod);
    const containers = nativeSidecars ? after.spec?.initContainers : after.spec?.containers;
    const sidecar = containers?.find((c) => c.name === 'veil-proxy');
    assert.ok(sidecar);
    sidecar.image = 'registry.example.com/veil/veil-sidecar:0.0.1-lenient';
    const { review } = await reviewPodAdmission(podReview('ml', after, 'UPDATE', before.pod), deps);
    assert.equal(review.response.allowed, false, `native sidecars ${nativeSidecars}`);
    assert.match(review.response.status?.message ?? '', /container veil-proxy is the Veil sidecar/);

    const model = structuredClone(before.pod);
    const own = model.spec?.containers.find((c) => c.name === 'model');
    assert.ok(own);
    own.image = 'example/model:2';
    const allowed = await reviewPodAdmission(podReview('ml', model, 'UPDATE', before.pod), deps);
    assert.equal(allowed.review.response.allowed, true, "the model's own image may change");
  }
});

test('an UPDATE of anything else is allowed, without a patch', async () => {
  const before = injectedPod();
  const after = structuredClone(before);
  if (after.metadata) after.metadata.labels = { ...after.metadata.labels, team: 'search' };
  const { review } = await reviewPodAdmission(podReview('ml', after, 'UPDATE', before), dependencies());
  assert.deepEqual(review.response, { uid: review.response.uid, allowed: true });

  const plain = pod();
  const relabelled = structuredClone(plain);
  if (relabelled.metadata) relabelled.metadata.annotations = { 'veil.dev/bootstrap-policy': '{}' };
  const second = await reviewPodAdmission(podReview('ml', relabelled, 'UPDATE', plain), dependencies());
  assert.equal(second.review.response.allowed, true, 'pods never injected are not guarded');
});

/** A CONNECT review as the API server sends it: the options, and no pod. */
function connectReview(subResource: string, options: Record<string, unknown>): AdmissionReviewRequest {
  const review = podReview('ml', pod());
  review.request = {
    ...review.request,
    kind: { group: '', version: 'v1', kind: String(options.kind) },
    subResource,
    name: 'embedder',
    operation: 'CONNECT',
    object: { apiVersion: 'v1', ...options },
  };
  return review;
}

function execReview(container?: string): AdmissionReviewRequest {
  return connectReview('exec', {
    kind: 'PodExecOptions',
    stdin: true,
    stdout: true,
    tty: true,
    command: ['node', '-e', 'console.log(process.env)'],
    ...(container === undefined ? {} : { container }),
  });
}

function withPod(found: V1Pod | Error): ReviewDependencies & { calls: Calls; read: string[] } {
  const read: string[] = [];
  return {
    ...dependencies(),
    read,
    readPod: async (namespace, name) => {
      read.push(`${namespace}/${name}`);
      if (found instanceof Error) throw found;
      return found;
    },
  };
}

test("a CONNECT to exec or attach into an injected pod's sidecar is refused, with the pod read from the API", async () => {
  const deps = withPod(injectedPod());
  const attach = connectReview('attach', { kind: 'PodAttachOptions', stdin: true, container: 'veil-proxy' });
  for (const review of [execReview('veil-proxy'), attach]) {
    const { review: response, outcome } = await reviewPodAdmission(review, deps);
    assert.equal(outcome, 'denied');
    assert.equal(response.response.status?.code, 403);
    assert.match(response.response.status?.message ?? '', /into container veil-proxy is refused/);
  }
  assert.deepEqual(deps.read, ['ml/embedder', 'ml/embedder']);
  for (const review of [execReview('model'), execReview()]) {
    const { review: response } = await reviewPodAdmission(review, deps);
    assert.deepEqual(response.response, { uid: review.request.uid, allowed: true });
  }
});

test('a CONNECT whose pod cannot be read is refused', async () => {
  for (const deps of [withPod(new Error('pods "embedder" is forbidden')), dependencies()]) {
    const { review, outcome } = await reviewPodAdmission(execReview('model'), deps);
    assert.equal(outcome, 'denied');
    assert.equal(review.response.status?.code, 500);
    assert.match(
      review.response.status?.message ?? '',
      /could not read pod ml\/embedder|cannot read pod ml\/embedder/,
    );
  }
});

test('a debug container targeting the sidecar is refused through pods/ephemeralcontainers', async () => {
  const before = injectedPod();
  const after = structuredClone(before);
  if (after.spec) after.spec.ephemeralContainers = [{ name: 'debugger', targetContainerName: 'veil-proxy' }];
  const review = podReview('ml', after, 'UPDATE', before);
  review.request.subResource = 'ephemeralcontainers';
  const { review: response } = await reviewPodAdmission(review, dependencies());
  assert.equal(response.response.allowed, false);
  assert.match(response.response.status?.message ?? '', /debugger targets veil-proxy/);

  const onModel = structuredClone(before);
  if (onModel.spec) onModel.spec.ephemeralContainers = [{ name: 'debugger', targetContainerName: 'model' }];
  const allowed = podReview('ml', onModel, 'UPDATE', before);
  allowed.request.subResource = 'ephemeralcontainers';
  assert.equal((await reviewPodAdmission(allowed, dependencies())).review.response.allowed, true);
});

test("a Binding rewriting an injected pod's Veil annotations is refused, at pods/binding and at bindings", async () => {
  const binding = (annotations: Record<string, string>) => {
    const review = podReview('ml', pod());
    review.request = {
      ...review.request,
      kind: { group: '', version: 'v1', kind: 'Binding' },
      name: 'embedder',
      object: {
        apiVersion: 'v1',
        kind: 'Binding',
        metadata: { name: 'embedder', annotations },
        target: { kind: 'Node', name: 'node-1' },
      },
    };
    return review;
  };
  const deps = withPod(injectedPod());
  const subresource = binding({ 'veil.dev/bootstrap-policy': '{"spec":{"access":{"rules":[]}},"x":1}' });
  subresource.request.subResource = 'binding';
  const legacy = binding({ 'veil.dev/policy': 'lenient' });
  legacy.request.resource = { group: '', version: 'v1', resource: 'bindings' };
  const trust = binding({ 'veil.dev/controller-key': '{"kty":"OKP","crv":"Ed25519","x":"dGVuYW50"}' });
  trust.request.subResource = 'binding';
  trust.request.userInfo = { username: injectorUsername };
  for (const review of [subresource, legacy, trust]) {
    const { review: response } = await reviewPodAdmission(review, deps);
    assert.equal(response.response.allowed, false);
    assert.equal(response.response.status?.code, 403);
  }
  const plain = binding({ 'scheduler.example.com/score': '7' });
  assert.equal((await reviewPodAdmission(plain, deps)).review.response.allowed, true);
});
