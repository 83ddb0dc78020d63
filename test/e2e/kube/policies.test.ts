// Policy distribution end to end: kubectl applies an EmbeddingPolicy, the
// controller validates it, pushes it to every injected pod's sidecar and
// writes status; bad versions are never pushed; a restarted controller
// converges without pushing again. Pods are stand-ins (support/standins.ts
// explains how): created through the API and injected by the real webhook,
// with real sidecars.
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { GROUP, policyHash, policySpecSchema, VERSION } from '@veil/core';
import type { RunningInjector } from '@veil/injector';
import { startDemoModel, startDevIssuer } from '@veil/sidecar';
import { type ControlPlane, freePort, startControlPlane } from '../../harness/index.ts';
import {
  applyPolicy,
  eventually,
  freshNamespace,
  installCrds,
  kubectl,
  readPolicy,
  readyCondition,
} from './support/cluster.ts';
import {
  deleteWebhook,
  ensureInjectorNamespace,
  type InjectorFiles,
  injectorFiles,
  registerWebhook,
  startTestInjector,
  waitForWebhook,
} from './support/injector.ts';
import { type StandIn, startStandIns, waitForHash } from './support/standins.ts';

// The lease a deployment runs with: here the controller shares its process
// with up to 50 sidecars, and a short lease would lapse under that load. The
// push debounce is longer than the default 100 ms, and so is the longest a
// stream of edits waits: the burst test's five edits must reach the controller
// within one window, and on a busy machine the API server's writes can come
// several hundred ms apart, more than a second from first to last.
const controllerSettings = {
  leaseDurationSeconds: 15,
  leaseRenewSeconds: 5,
  pushDebounceMs: 1000,
  pushMaxDebounceMs: 5000,
};

let cp: ControlPlane;
let files: InjectorFiles;
let adminPort: number;
let injector: RunningInjector | undefined;
let webhookName: string | undefined;
let issuer: Awaited<ReturnType<typeof startDevIssuer>>;
let model: Awaited<ReturnType<typeof startDemoModel>>;
const modelSaw: string[] = [];
const standIns: StandIn[] = [];
/** Every push the first controller had acknowledged, for the printed breakdown. */
const acks: { at: number; hash: string }[] = [];

before(async () => {
  cp = await startControlPlane();
  await installCrds(cp);
  await ensureInjectorNamespace(cp);
  // Every stand-in listens on this port, each on its own loopback address.
  adminPort = await freePort();
  files = await injectorFiles(cp, { adminPort });
  injector = await startTestInjector(cp, files, controllerSettings, {
    onPush: (event) => {
      if (event.outcome.kind === 'ack') acks.push({ at: performance.now(), hash: event.hash });
    },
  });
  webhookName = await registerWebhook(cp, injector.webhook.url);
  await waitForWebhook(cp, await freshNamespace(cp, 'webhook-ready'));
  issuer = await startDevIssuer();
  model = await startDemoModel({ onRequest: (_path, body) => modelSaw.push(JSON.stringify(body)) });
});
after(async () => {
  await Promise.all(standIns.map((s) => s.close()));
  if (webhookName) await deleteWebhook(cp, webhookName).catch(() => undefined);
  await injector?.close();
  await model?.close();
  await issuer?.close();
  await cp?.stop();
});

function spec(maskEmployeeIds: boolean) {
  return {
    authentication: { oidc: [{ issuer: issuer.issuer, audiences: ['veil'], algorithms: ['ES256'] }] },
    access: { rules: [{ name: 'team', groups: ['ml-team'] }] },
    masking: {
      rules: maskEmployeeIds
        ? [
            {
              name: 'employee-ids',
              patterns: [{ name: 'employee-id', regex: 'EMP-[0-9]{6}' }],
              operator: 'redact',
              scopes: ['forward', 'audit'],
            },
          ]
        : [],
    },
  };
}

const hashOf = (value: unknown) => policyHash(policySpecSchema.parse(value));

async function standInsFor(namespace: string, count: number): Promise<StandIn[]> {
  const controller = { url: injector?.pull.url ?? '', caFile: cp.caCert };
  const started = await startStandIns({ cp, namespace, count, adminPort, modelUrl: model.url, controller });
  standIns.push(...started);
  return started;
}

/** What the model receives when a caller embeds `text` through `standIn`. */
async function embedThrough(standIn: StandIn, text: string): Promise<string> {
  const token = await issuer.mint({ sub: 'alice', aud: 'veil', groups: ['ml-team'] });
  const before = modelSaw.length;
  const response = await fetch(`${standIn.sidecar.url}/v1/embeddings`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'embed-small', input: text }),
  });
  assert.equal(response.status, 200, await response.clone().text());
  await response.arrayBuffer();
  assert.equal(modelSaw.length, before + 1);
  return modelSaw[before] ?? '';
}

async function statusSettles(namespace: string, hash: string, total: number) {
  return eventually(`status ${total}/${total} at ${hash}`, async () => {
    const policy = await readPolicy(cp, namespace, 'default');
    const ready = readyCondition(policy);
    return policy.status?.contentHash === hash &&
      policy.status.podsInSync === total &&
      policy.status.observedGeneration === policy.metadata.generation &&
      ready?.status === 'True'
      ? policy
      : undefined;
  });
}

test('kubectl apply reaches 50 sidecars, which enforce the new masking rule', async () => {
  const namespace = await freshNamespace(cp, 'fleet');
  await applyPolicy(cp, namespace, 'default', spec(false));
  await eventually('the policy in the cache', async () => injector?.controller.policy(namespace, 'default'));
  const fleet = await standInsFor(namespace, 50);
  const first = hashOf(spec(false));
  await waitForHash(fleet, first);
  await statusSettles(namespace, first, 50);
  // The webhook wrote the policy into each pod: they started enforcing it, unpushed.
  for (const standIn of fleet) assert.equal(standIn.puts().length, 0);
  assert.match(await embedThrough(fleet[0] as StandIn, 'ticket of EMP-123456'), /EMP-123456/);

  const second = hashOf(spec(true));
  const started = performance.now();
  await applyPolicy(cp, namespace, 'default', spec(true));
  const applied = performance.now();
  await waitForHash(fleet, second);
  const done = performance.now();
  const pushed = acks.filter((a) => a.hash === second).map((a) => (a.at - started).toFixed(0));
  console.log(
    `propagation: kubectl apply to 50/50 sidecars enforcing: ${(done - started).toFixed(0)} ms ` +
      `(kubectl itself returned after ${(applied - started).toFixed(0)} ms; ` +
      `pushes acknowledged from ${pushed[0]} to ${pushed.at(-1)} ms)`,
  );
  for (const [i, standIn] of fleet.entries()) {
    const seen = await embedThrough(standIn, `ticket ${i} of EMP-${String(100_000 + i)}`);
    assert.doesNotMatch(seen, /EMP-\d{6}/, `${standIn.name} forwarded an employee id`);
  }
  const settled = await statusSettles(namespace, second, 50);
  assert.equal(settled.status?.sync, '50/50');
  assert.equal(readyCondition(settled)?.reason, 'Synced');
  for (const standIn of fleet)
    assert.equal(standIn.puts().length, 1, `${standIn.name}: one push, of the new version`);

  // The same again from the API write, without kubectl's own start-up.
  const third = { ...spec(true), limits: { maxInputsPerRequest: 128 } };
  const writing = performance.now();
  await cp
    .kubeConfig()
    .makeApiClient(CustomObjectsApi)
    .patchNamespacedCustomObject(
      {
        group: GROUP,
        version: VERSION,
        plural: 'embeddingpolicies',
        namespace,
        name: 'default',
        body: { spec: third },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  await waitForHash(fleet, hashOf(third));
  const pushed3 = acks.filter((a) => a.hash === hashOf(third)).map((a) => (a.at - writing).toFixed(0));
  console.log(
    `propagation: API write to 50/50 sidecars enforcing: ${(performance.now() - writing).toFixed(0)} ms ` +
      `(pushes acknowledged from ${pushed3[0]} to ${pushed3.at(-1)} ms)`,
  );
  await statusSettles(namespace, hashOf(third), 50);
  for (const standIn of fleet)
    assert.equal(standIn.puts().length, 2, `${standIn.name}: one push per version`);

  const table = await kubectl(cp, 'get', 'embeddingpolicies', '-n', namespace);
  const [header, row] = table.trim().split('\n');
  assert.deepEqual(header?.split(/\s{2,}/).slice(0, 4), ['NAME', 'READY', 'IN SYNC', 'HASH']);
  assert.deepEqual(row?.split(/\s+/).slice(0, 4), ['default', 'True', '50/50', hashOf(third)]);
  console.log(table.trim());
});

test('a burst of edits reaches each pod as one push of the last version', async () => {
  const namespace = await freshNamespace(cp, 'burst');
  await applyPolicy(cp, namespace, 'default', spec(false));
  await eventually('the policy in the cache', async () => injector?.controller.policy(namespace, 'default'));
  const pods = await standInsFor(namespace, 5);
  await waitForHash(pods, hashOf(spec(false)));
  // The controller has asked every pod what it enforces: a pod it first reaches
  // mid-burst would rightly get the version of that moment at once.
  await statusSettles(namespace, hashOf(spec(false)), 5);
  // Pushes before the burst (a pod admitted before its policy was cached gets one) are not its to count.
  const before = pods.map((pod) => pod.puts().length);
  const limits = (n: number) => ({ ...spec(true), limits: { maxInputsPerRequest: 100 + n } });
  // Sent together, straight through the API: the API server orders them, and
  // whichever it stores last is the version every pod must end up with.
  const api = cp.kubeConfig().makeApiClient(CustomObjectsApi);
  const target = { group: GROUP, version: VERSION, plural: 'embeddingpolicies', namespace, name: 'default' };
  await Promise.all(
    [0, 1, 2, 3, 4].map((n) =>
      api.patchNamespacedCustomObject(
        { ...target, body: { spec: limits(n) } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      ),
    ),
  );
  const stored = (await api.getNamespacedCustomObject(target)) as {
    spec: unknown;
    metadata: { generation: number };
  };
  assert.ok(stored.metadata.generation >= 6, 'five edits after the first version');
  const last = hashOf(stored.spec);
  await waitForHash(pods, last);
  await statusSettles(namespace, last, 5);
  for (const [i, pod] of pods.entries()) {
    assert.equal(pod.puts().length - (before[i] ?? 0), 1, `${pod.name} got one push`);
  }
});

test('a bad policy is reported with its field path and never pushed; sidecars keep the previous one', async () => {
  const namespace = await freshNamespace(cp, 'bad');
  await applyPolicy(cp, namespace, 'default', spec(true));
  await eventually('the policy in the cache', async () => injector?.controller.policy(namespace, 'default'));
  const pods = await standInsFor(namespace, 3);
  const good = hashOf(spec(true));
  await waitForHash(pods, good);
  await statusSettles(namespace, good, 3);
  const pushesBefore = pods.map((p) => p.puts().length);

  const bad = spec(true);
  // RE2 has no look-behind: valid for the API server's schema, invalid for Veil.
  bad.masking.rules.push({
    name: 'after-prefix',
    patterns: [{ name: 'digits', regex: '(?<=ID-)[0-9]+' }],
    operator: 'redact',
    scopes: ['forward'],
  });
  await applyPolicy(cp, namespace, 'default', bad);
  const reported = await eventually('an Invalid condition', async () => {
    const policy = await readPolicy(cp, namespace, 'default');
    const ready = readyCondition(policy);
    return ready?.reason === 'Invalid' && policy.status?.observedGeneration === policy.metadata.generation
      ? policy
      : undefined;
  });
  const ready = readyCondition(reported);
  console.log(`condition: ${ready?.message}`);
  assert.equal(ready?.status, 'False');
  assert.match(ready?.message ?? '', /spec\.masking\.rules\[1\]\.patterns\[0\]\.regex/);
  assert.equal(reported.status?.contentHash, good, 'status shows the version still enforced');
  assert.equal(reported.status?.sync, '3/3');

  const kubectlView = await kubectl(cp, 'get', 'embeddingpolicies', '-n', namespace);
  assert.match(kubectlView, /default\s+False\s+3\/3/);
  // The controller has judged this version (the condition says so); a push would
  // have followed its debounce: wait that out twice. The sidecars still answer with the old hash.
  await sleep(2 * controllerSettings.pushDebounceMs);
  await waitForHash(pods, good);
  assert.deepEqual(
    pods.map((p) => p.puts().length),
    pushesBefore,
  );
  assert.doesNotMatch(await embedThrough(pods[0] as StandIn, 'EMP-654321'), /EMP-654321/);
});

/** What a caller gets from `standIn` now: the status of an embedding call and of its pod's readiness probe. */
async function serving(standIn: StandIn): Promise<{ embed: number; ready: number; reason: unknown }> {
  const token = await issuer.mint({ sub: 'alice', aud: 'veil', groups: ['ml-team'] });
  const embed = await fetch(`${standIn.sidecar.url}/v1/embeddings`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'embed-small', input: 'hello' }),
  });
  await embed.arrayBuffer();
  const ready = await fetch(`${standIn.sidecar.adminUrl}/readyz`);
  const body = (await ready.json()) as { reason?: unknown };
  return { embed: embed.status, ready: ready.status, reason: body.reason };
}

test('deleting a policy cuts its pods off, across a restart too; re-creating it restores them', async () => {
  const namespace = await freshNamespace(cp, 'revoke');
  await applyPolicy(cp, namespace, 'default', spec(false));
  await eventually('the policy in the cache', async () => injector?.controller.policy(namespace, 'default'));
  const pods = await standInsFor(namespace, 3);
  const first = hashOf(spec(false));
  await waitForHash(pods, first);
  await statusSettles(namespace, first, 3);
  const api = cp.kubeConfig().makeApiClient(CustomObjectsApi);
  const target = { group: GROUP, version: VERSION, plural: 'embeddingpolicies', namespace, name: 'default' };
  const cutOff = { embed: 503, ready: 503, reason: 'no valid policy' };

  // Deleted and re-created at once: it ends enforced, in its new version.
  await api.deleteNamespacedCustomObject(target);
  await applyPolicy(cp, namespace, 'default', spec(true));
  const second = hashOf(spec(true));
  await waitForHash(pods, second);
  await statusSettles(namespace, second, 3);
  for (const pod of pods) assert.doesNotMatch(await embedThrough(pod, 'EMP-111111'), /EMP-111111/);

  await api.deleteNamespacedCustomObject(target);
  await eventually(
    'every pod cut off',
    async () => {
      const states = await Promise.all(pods.map(serving));
      return states.every((s) => s.embed === 503 && s.ready === 503) ? states : undefined;
    },
    30_000,
  );
  for (const pod of pods) assert.deepEqual(await serving(pod), cutOff, pod.name);

  // Its container restarted: the bootstrap written at admission does not come back.
  const [restarted] = pods;
  assert.ok(restarted);
  await restarted.restart();
  assert.equal(restarted.sidecar.loaded, 'revoked');
  assert.deepEqual(await restarted.sidecar.pull, { kind: 'absent' });
  assert.deepEqual(await serving(restarted), cutOff);

  // Re-created: the controller's push restores every pod, the restarted one included.
  await applyPolicy(cp, namespace, 'default', spec(false));
  await waitForHash(pods, first);
  await statusSettles(namespace, first, 3);
  for (const pod of pods) assert.match(await embedThrough(pod, 'EMP-222222'), /EMP-222222/);
});

test('a restarted controller converges status without pushing again', async () => {
  const namespace = await freshNamespace(cp, 'restart');
  await applyPolicy(cp, namespace, 'default', spec(false));
  await eventually('the policy in the cache', async () => injector?.controller.policy(namespace, 'default'));
  const pods = await standInsFor(namespace, 10);
  const first = hashOf(spec(false));
  await waitForHash(pods, first);
  await statusSettles(namespace, first, 10);
  const pushes = () => pods.reduce((sum, p) => sum + p.puts().length, 0);
  const gets = () => pods.map((p) => p.admin.filter((r) => r.method === 'GET').length);
  // The pods started with this version as their bootstrap: nothing to push.
  assert.equal(pushes(), 0);

  // Down: the status is wiped, so only a working controller can bring it back.
  await injector?.close();
  injector = undefined;
  await cp
    .kubeConfig()
    .makeApiClient(CustomObjectsApi)
    .patchNamespacedCustomObjectStatus(
      {
        group: GROUP,
        version: VERSION,
        plural: 'embeddingpolicies',
        namespace,
        name: 'default',
        body: { status: null },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  assert.equal((await readPolicy(cp, namespace, 'default')).status, undefined);
  const getsBefore = gets();

  injector = await startTestInjector(cp, files, controllerSettings);
  const restored = await statusSettles(namespace, first, 10);

  assert.equal(restored.status?.sync, '10/10');
  // Each pod was asked what it enforces, and nobody was pushed to.
  assert.ok(gets().every((n, i) => n > (getsBefore[i] ?? 0)));
  assert.equal(pushes(), 0, 'no duplicate pushes');

  // An edit made while the controller is down reaches each pod once.
  await injector.close();
  injector = undefined;
  await applyPolicy(cp, namespace, 'default', spec(true));
  injector = await startTestInjector(cp, files, controllerSettings);
  const second = hashOf(spec(true));
  await waitForHash(pods, second);
  await statusSettles(namespace, second, 10);
  for (const pod of pods) assert.equal(pod.puts().length, 1, `${pod.name}: one push, of the edit`);
});
