// Self-managed webhook certificates against the real API server: the leader
// creates the Secret and patches the CA bundle into a MutatingWebhookConfiguration;
// a short-lived serving certificate is renewed and served without a restart; a CA
// rotation keeps the old CA in the bundle until it expires.
import assert from 'node:assert/strict';
import { randomBytes, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { connect } from 'node:tls';
import { AdmissionregistrationV1Api, CoreV1Api } from '@kubernetes/client-node';
import type { RunningInjector } from '@veil/injector';
import { type ControlPlane, startControlPlane } from '../../harness/index.ts';
import { eventually, installCrds } from './support/cluster.ts';
import {
  ensureInjectorNamespace,
  injectorFiles,
  injectorNamespace,
  startTestInjector,
} from './support/injector.ts';

const service = 'veil-injector';
const serviceName = `${service}.${injectorNamespace}.svc`;

let cp: ControlPlane;
const running: RunningInjector[] = [];
const webhookConfigurations: string[] = [];

before(async () => {
  cp = await startControlPlane();
  await installCrds(cp);
  await ensureInjectorNamespace(cp);
});
after(async () => {
  await Promise.all(running.map((injector) => injector.close()));
  const admission = cp?.kubeConfig().makeApiClient(AdmissionregistrationV1Api);
  for (const name of webhookConfigurations)
    await admission?.deleteMutatingWebhookConfiguration({ name }).catch(() => undefined);
  await cp?.stop();
});

/** Two webhooks no pod ever matches, without a caBundle: the controller fills it in. */
async function createWebhookConfiguration(): Promise<string> {
  const name = `veil-certs-${randomBytes(3).toString('hex')}`;
  const webhook = (id: string) => ({
    name: `${id}.pods.veil.dev`,
    admissionReviewVersions: ['v1'],
    sideEffects: 'None',
    failurePolicy: 'Ignore',
    clientConfig: {
      service: { namespace: injectorNamespace, name: service, path: '/mutate-pods', port: 443 },
    },
    objectSelector: { matchLabels: { 'veil.dev/never': 'matches' } },
    rules: [{ apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], operations: ['CREATE'] }],
  });
  await cp
    .kubeConfig()
    .makeApiClient(AdmissionregistrationV1Api)
    .createMutatingWebhookConfiguration({
      body: { metadata: { name }, webhooks: [webhook('a'), webhook('b')] },
    });
  webhookConfigurations.push(name);
  return name;
}

async function start(overrides: Record<string, string | number>) {
  const files = await injectorFiles(cp);
  // No pair on disk yet: the replica waits for the Secret's.
  const dir = join(cp.dir, `certs-${randomBytes(3).toString('hex')}`);
  await mkdir(dir);
  const webhooks = await createWebhookConfiguration();
  const secret = `veil-certs-${randomBytes(3).toString('hex')}`;
  const injector = await startTestInjector(
    cp,
    { ...files, tlsCertFile: join(dir, 'tls.crt'), tlsKeyFile: join(dir, 'tls.key') },
    {
      certsMode: 'self-managed',
      certsSecretName: secret,
      certsServices: service,
      certsWebhooks: webhooks,
      certsCheckSeconds: 0.25,
      // Each test its own election: an earlier test's injector still leads its Lease.
      leaseName: `veil-certs-${randomBytes(3).toString('hex')}`,
      ...overrides,
    },
  );
  running.push(injector);
  return { injector, webhooks, secret };
}

async function secretData(name: string): Promise<Record<string, string>> {
  const secret = await cp
    .kubeConfig()
    .makeApiClient(CoreV1Api)
    .readNamespacedSecret({ namespace: injectorNamespace, name });
  return Object.fromEntries(
    Object.entries(secret.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]),
  );
}

/** The PEM bundle of every webhook in the configuration (one string per webhook). */
async function bundles(name: string): Promise<string[]> {
  const config = await cp
    .kubeConfig()
    .makeApiClient(AdmissionregistrationV1Api)
    .readMutatingWebhookConfiguration({ name });
  return (config.webhooks ?? []).map((w) =>
    Buffer.from(w.clientConfig.caBundle ?? '', 'base64').toString('utf8'),
  );
}

const pems = (bundle: string) =>
  bundle.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----\n?/g) ?? [];

/** Connects as the API server would (the Service name, trusting only `ca`): the served certificate. */
async function served(url: string, ca: string): Promise<X509Certificate> {
  const { hostname, port } = new URL(url);
  const socket = connect({ host: hostname, port: Number(port), servername: serviceName, ca });
  try {
    await once(socket, 'secureConnect');
    assert.equal(socket.authorized, true, String(socket.authorizationError));
    return socket.getPeerX509Certificate() as X509Certificate;
  } finally {
    socket.destroy();
  }
}

test('no Secret: the leader creates it and patches the caBundle into every webhook', async () => {
  const { injector, webhooks, secret } = await start({});
  const data = await secretData(secret);
  assert.deepEqual(Object.keys(data).sort(), ['ca.crt', 'ca.key', 'tls.crt', 'tls.key']);
  const found = await eventually('the caBundle', async () => {
    const all = await bundles(webhooks);
    return all.every((b) => b === data['ca.crt']) ? all : undefined;
  });
  assert.equal(found.length, 2);
  const leaf = await served(injector.webhook.url, data['ca.crt'] as string);
  assert.equal(leaf.fingerprint256, new X509Certificate(data['tls.crt'] as string).fingerprint256);
  assert.equal(leaf.checkHost(`${serviceName}.cluster.local`), `${serviceName}.cluster.local`);
});

test('a short-lived serving certificate is renewed and served without a restart', async () => {
  const { injector, secret } = await start({ certsServingLifetimeSeconds: 6, certsRenewFraction: 0.5 });
  const ca = (await secretData(secret))['ca.crt'] as string;
  const first = (await served(injector.webhook.url, ca)).fingerprint256;
  const second = await eventually(
    'a new certificate served',
    async () => {
      const now = (await served(injector.webhook.url, ca)).fingerprint256;
      return now === first ? undefined : now;
    },
    30_000,
    200,
  );
  assert.notEqual(second, first);
  // Verified against the same CA: only the serving certificate moved.
  assert.equal((await secretData(secret))['ca.crt'], ca);
});

test('a CA rotation keeps the old CA in the caBundle until it expires', async () => {
  const { injector, webhooks, secret } = await start({ certsCaLifetimeSeconds: 30, certsRenewFraction: 0.4 });
  const oldCa = (await secretData(secret))['ca.crt'] as string;
  const rotated = await eventually(
    'a second CA in the bundle',
    async () => {
      const data = await secretData(secret);
      const all = await bundles(webhooks);
      return data['ca.crt'] !== oldCa && all.every((b) => pems(b).length === 2) ? { data, all } : undefined;
    },
    60_000,
    200,
  );
  const newCa = rotated.data['ca.crt'] as string;
  assert.equal(rotated.data['ca-previous.crt'], oldCa);
  for (const bundle of rotated.all) assert.deepEqual(pems(bundle), [newCa, oldCa]);
  // The replica serves a certificate of the new CA, which the bundle trusts.
  await eventually('the new CA served', async () => {
    const leaf = await served(injector.webhook.url, newCa).catch(() => undefined);
    return leaf?.verify(new X509Certificate(newCa).publicKey) ? true : undefined;
  });
  // Once the old CA expires it leaves the bundle.
  await eventually(
    'the old CA dropped',
    async () => {
      const data = await secretData(secret);
      const all = await bundles(webhooks);
      return data['ca-previous.crt'] === undefined && all.every((b) => !b.includes(oldCa)) ? true : undefined;
    },
    60_000,
    200,
  );
});
