// The shared hash key end to end: the webhook mounts the namespace's hash-key
// Secret into every sidecar, so two pods of one namespace mask the same e-mail to
// the same token, and pods of a namespace without the Secret still serve, each on
// a key of its own. Pods are stand-ins (support/standins.ts explains how): created
// through the API and injected by the real webhook, with real sidecars that get
// the Secret's data where the kubelet would mount it.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import type { RunningInjector } from '@veil/injector';
import { startDemoModel, startDevIssuer } from '@veil/sidecar';
import { type ControlPlane, freePort, infraBinary, startControlPlane } from '../../harness/index.ts';
import { applyPolicy, eventually, freshNamespace, installCrds } from './support/cluster.ts';
import {
  deleteWebhook,
  ensureInjectorNamespace,
  injectorFiles,
  registerWebhook,
  startTestInjector,
  waitForWebhook,
} from './support/injector.ts';
import { type StandIn, startStandIns } from './support/standins.ts';

const run = promisify(execFile);
const EMAIL = 'jane.doe@example.com';

let cp: ControlPlane;
let adminPort: number;
let injector: RunningInjector | undefined;
let webhookName: string | undefined;
let issuer: Awaited<ReturnType<typeof startDevIssuer>>;
let model: Awaited<ReturnType<typeof startDemoModel>>;
const modelSaw: unknown[] = [];
const standIns: StandIn[] = [];

before(async () => {
  cp = await startControlPlane();
  await installCrds(cp);
  await ensureInjectorNamespace(cp);
  adminPort = await freePort();
  injector = await startTestInjector(cp, await injectorFiles(cp, { adminPort }));
  webhookName = await registerWebhook(cp, injector.webhook.url);
  await waitForWebhook(cp, await freshNamespace(cp, 'webhook-ready'));
  issuer = await startDevIssuer();
  model = await startDemoModel({ onRequest: (_path, body) => modelSaw.push(body) });
});
after(async () => {
  await Promise.all(standIns.map((s) => s.close()));
  if (webhookName) await deleteWebhook(cp, webhookName).catch(() => undefined);
  await injector?.close();
  await model?.close();
  await issuer?.close();
  await cp?.stop();
});

/** A namespace whose default policy hashes e-mail addresses before the model sees them. */
async function hashingNamespace(prefix: string): Promise<string> {
  const namespace = await freshNamespace(cp, prefix);
  await applyPolicy(cp, namespace, 'default', {
    authentication: { oidc: [{ issuer: issuer.issuer, audiences: ['veil'], algorithms: ['ES256'] }] },
    access: { rules: [{ name: 'team', groups: ['ml-team'] }] },
    masking: { rules: [{ name: 'emails', detectors: ['email'], operator: 'hash', scopes: ['forward'] }] },
  });
  // Written into the pods at admission, so the stand-ins start enforcing it.
  await eventually('the policy in the cache', async () => injector?.controller.policy(namespace, 'default'));
  return namespace;
}

async function podsIn(namespace: string, prefix: string): Promise<StandIn[]> {
  const controller = { url: injector?.pull.url ?? '', caFile: cp.caCert };
  const started = await startStandIns({
    cp,
    namespace,
    count: 2,
    adminPort,
    modelUrl: model.url,
    controller,
    prefix,
  });
  standIns.push(...started);
  return started;
}

/** The token the model received in place of EMAIL when a caller embedded it through `standIn`. */
async function tokenThrough(standIn: StandIn): Promise<string> {
  const before = modelSaw.length;
  const response = await fetch(`${standIn.sidecar.url}/v1/embeddings`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${await issuer.mint({ sub: 'alice', aud: 'veil', groups: ['ml-team'] })}`,
      'content-type': 'application/json',
    },
    body: JSON.stringify({ model: 'embed-small', input: `please write to ${EMAIL}` }),
  });
  assert.equal(response.status, 200, await response.clone().text());
  await response.arrayBuffer();
  const seen = JSON.stringify(modelSaw[before]);
  assert.ok(!seen.includes(EMAIL), `${standIn.name} forwarded the address`);
  const token = /\[EMAIL:[0-9a-f]{16}\]/.exec(seen)?.[0];
  assert.ok(token, `${standIn.name} forwarded a hash token: ${seen}`);
  return token;
}

/** The command docs/operations.md gives, as a shell runs it: the key is never on a command line or a disk. */
async function createHashKeySecret(namespace: string): Promise<void> {
  const kubectl = `${infraBinary('kubectl')} --kubeconfig ${cp.kubeconfig}`;
  await run('bash', [
    '-o',
    'pipefail',
    '-c',
    `head -c 32 /dev/urandom | ${kubectl} -n ${namespace} create secret generic veil-hash-key --from-file=key=/dev/stdin`,
  ]);
}

test('two pods of a namespace with the hash-key Secret make the same token for the same e-mail', async () => {
  const namespace = await hashingNamespace('shared-key');
  await createHashKeySecret(namespace);
  const [a, b] = await podsIn(namespace, 'embedder');
  assert.ok(a && b);
  for (const pod of [a, b]) {
    assert.equal(pod.sidecar.sharedHashKey, true, pod.name);
    assert.deepEqual(
      pod.log.filter((m) => m.includes('hash key')),
      [],
    );
  }
  const token = await tokenThrough(a);
  assert.equal(await tokenThrough(b), token);
  assert.equal(await tokenThrough(a), token, 'and again on the first');
});

test('without the Secret the pods still serve, each on a key of its own, and warn', async () => {
  const namespace = await hashingNamespace('own-keys');
  const [a, b] = await podsIn(namespace, 'embedder');
  assert.ok(a && b);
  for (const pod of [a, b]) {
    assert.equal(pod.sidecar.sharedHashKey, false, pod.name);
    assert.equal(pod.log.filter((m) => /no shared hash key/.test(m)).length, 1, pod.log.join('\n'));
  }
  const token = await tokenThrough(a);
  assert.equal(await tokenThrough(a), token, 'stable within one pod');
  assert.notEqual(await tokenThrough(b), token);
});
