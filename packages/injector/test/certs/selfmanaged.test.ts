// The self-managed certificates against a real API server: the Secret and the
// webhook configuration's caBundle, as the leader keeps them.
import assert from 'node:assert/strict';
import { randomBytes, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { AdmissionregistrationV1Api, CoreV1Api } from '@kubernetes/client-node';
import { freshNamespace } from '../../../../test/e2e/kube/support/cluster.ts';
import { type ControlPlane, startControlPlane } from '../../../../test/harness/index.ts';
import { SelfManagedCertificates, serviceDnsNames } from '../../src/certs/selfmanaged.ts';

let cp: ControlPlane;
let dir: string;

before(async () => {
  cp = await startControlPlane();
  dir = await mkdtemp(join(tmpdir(), 'veil-selfmanaged-'));
});

after(async () => {
  await cp?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** A webhook configuration that admits nothing: only its caBundle matters here. */
async function createWebhookConfiguration(name: string): Promise<void> {
  await cp
    .kubeConfig()
    .makeApiClient(AdmissionregistrationV1Api)
    .createMutatingWebhookConfiguration({
      body: {
        metadata: { name },
        webhooks: [
          {
            name: 'pods.veil.dev',
            clientConfig: { service: { name: 'veil-injector', namespace: 'veil-system', path: '/mutate' } },
            rules: [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'] }],
            objectSelector: { matchLabels: { 'veil.dev/never': 'true' } },
            failurePolicy: 'Ignore',
            sideEffects: 'None',
            admissionReviewVersions: ['v1'],
          },
        ],
      },
    });
}

async function liveBundle(name: string): Promise<X509Certificate[]> {
  const config = await cp
    .kubeConfig()
    .makeApiClient(AdmissionregistrationV1Api)
    .readMutatingWebhookConfiguration({ name });
  const pem = Buffer.from(config.webhooks?.[0]?.clientConfig.caBundle ?? '', 'base64').toString('utf8');
  return (pem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? []).map(
    (block) => new X509Certificate(block),
  );
}

test('deleting the Secret to rotate now keeps the CA the other replicas still serve under in the bundle', async () => {
  const namespace = await freshNamespace(cp, 'certs');
  const webhooks = `veil-${randomBytes(3).toString('hex')}`;
  await createWebhookConfiguration(webhooks);
  const files = { certFile: join(dir, 'tls.crt'), keyFile: join(dir, 'tls.key') };
  const certificates = new SelfManagedCertificates({
    kubeConfig: cp.kubeConfig(),
    namespace,
    secretName: 'veil-webhook-tls',
    webhooks: [webhooks],
    policy: {
      dnsNames: serviceDnsNames(['veil-injector'], namespace),
      caLifetimeSeconds: 3650 * 86_400,
      servingLifetimeSeconds: 365 * 86_400,
      renewFraction: 1 / 3,
    },
    files,
    isLeader: () => true,
  });
  try {
    await certificates.trigger();
    const [firstCa] = await liveBundle(webhooks);
    // What a replica that has not copied the new pair yet goes on serving.
    const stillServed = new X509Certificate(await readFile(files.certFile, 'utf8'));
    assert.ok(firstCa && stillServed.verify(firstCa.publicKey));

    await cp
      .kubeConfig()
      .makeApiClient(CoreV1Api)
      .deleteNamespacedSecret({ namespace, name: 'veil-webhook-tls' });
    await certificates.trigger();

    const bundle = await liveBundle(webhooks);
    assert.equal(bundle.length, 2, 'the new CA, then the one the deleted Secret held');
    const [newCa, previousCa] = bundle as [X509Certificate, X509Certificate];
    assert.notEqual(newCa.fingerprint256, firstCa.fingerprint256);
    assert.equal(previousCa.fingerprint256, firstCa.fingerprint256);
    assert.ok(stillServed.verify(previousCa.publicKey));
    assert.ok(new X509Certificate(await readFile(files.certFile, 'utf8')).verify(newCa.publicKey));
  } finally {
    certificates.close();
    await cp
      .kubeConfig()
      .makeApiClient(AdmissionregistrationV1Api)
      .deleteMutatingWebhookConfiguration({ name: webhooks });
  }
});
