import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { AdmissionregistrationV1Api, CoreV1Api, CustomObjectsApi, type V1Pod } from '@kubernetes/client-node';
import Fastify, { type FastifyInstance } from 'fastify';
import { type ControlPlane, freePort, infraBinary, startControlPlane } from '../../harness/index.ts';

const run = promisify(execFile);
let cp: ControlPlane;

before(async () => {
  cp = await startControlPlane();
});
after(async () => {
  await cp?.stop();
});

function kubectl(...args: string[]) {
  return run(infraBinary('kubectl'), ['--kubeconfig', cp.kubeconfig, ...args]);
}

const widgetCrd = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: 'widgets.smoke.veil.dev' },
  spec: {
    group: 'smoke.veil.dev',
    scope: 'Namespaced',
    names: { plural: 'widgets', singular: 'widget', kind: 'Widget' },
    versions: [
      {
        name: 'v1',
        served: true,
        storage: true,
        schema: {
          openAPIV3Schema: {
            type: 'object',
            properties: { spec: { type: 'object', properties: { size: { type: 'integer' } } } },
          },
        },
      },
    ],
  },
};

test('kubectl applies a CRD and client-node reads an object of it back', async () => {
  const file = join(cp.dir, 'widget-crd.json');
  await writeFile(file, JSON.stringify(widgetCrd));
  await kubectl('apply', '-f', file);
  await kubectl('wait', '--for=condition=Established', '--timeout=30s', 'crd/widgets.smoke.veil.dev');

  const widget = {
    apiVersion: 'smoke.veil.dev/v1',
    kind: 'Widget',
    metadata: { name: 'w1', namespace: 'default' },
    spec: { size: 7 },
  };
  const widgetFile = join(cp.dir, 'widget.json');
  await writeFile(widgetFile, JSON.stringify(widget));
  await kubectl('apply', '-f', widgetFile);

  const api = cp.kubeConfig().makeApiClient(CustomObjectsApi);
  const stored = (await api.getNamespacedCustomObject({
    group: 'smoke.veil.dev',
    version: 'v1',
    namespace: 'default',
    plural: 'widgets',
    name: 'w1',
  })) as { spec: { size: number } };
  assert.equal(stored.spec.size, 7);
});

async function startPatchingWebhook(): Promise<{
  server: FastifyInstance;
  url: string;
  caBundle: string;
  calls: number[];
}> {
  const cert = await cp.issueServingCert('smoke-webhook');
  const server = Fastify({ https: { cert: await readFile(cert.cert), key: await readFile(cert.key) } });
  const calls: number[] = [];
  server.post('/mutate', async (request) => {
    const review = request.body as { request: { uid: string } };
    calls.push(Date.now());
    const patch = [{ op: 'add', path: '/metadata/labels', value: { 'smoke.veil.dev/patched': 'yes' } }];
    return {
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      response: {
        uid: review.request.uid,
        allowed: true,
        patchType: 'JSONPatch',
        patch: Buffer.from(JSON.stringify(patch)).toString('base64'),
      },
    };
  });
  const port = await freePort();
  await server.listen({ host: '127.0.0.1', port });
  return {
    server,
    url: `https://127.0.0.1:${port}/mutate`,
    caBundle: (await readFile(cp.caCert)).toString('base64'),
    calls,
  };
}

test('a registered mutating webhook patches a Pod before it is stored', async () => {
  const hook = await startPatchingWebhook();
  try {
    const admission = cp.kubeConfig().makeApiClient(AdmissionregistrationV1Api);
    await admission.createMutatingWebhookConfiguration({
      body: {
        metadata: { name: 'smoke-patcher' },
        webhooks: [
          {
            name: 'patcher.smoke.veil.dev',
            admissionReviewVersions: ['v1'],
            sideEffects: 'None',
            failurePolicy: 'Fail',
            clientConfig: { url: hook.url, caBundle: hook.caBundle },
            rules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['pods'] }],
            objectSelector: { matchLabels: { smoke: 'webhook' } },
          },
        ],
      },
    });
    const core = cp.kubeConfig().makeApiClient(CoreV1Api);
    const pod: V1Pod = {
      metadata: { name: 'patched', namespace: 'default', labels: { smoke: 'webhook' } },
      spec: { containers: [{ name: 'model', image: 'example.invalid/model:1' }] },
    };
    // The API server may take a moment to see the new configuration.
    let stored: V1Pod | undefined;
    for (let attempt = 0; attempt < 50 && !stored?.metadata?.labels?.['smoke.veil.dev/patched']; attempt++) {
      if (stored)
        await core.deleteNamespacedPod({ name: 'patched', namespace: 'default', gracePeriodSeconds: 0 });
      stored = await core.createNamespacedPod({ namespace: 'default', body: pod });
      if (!stored.metadata?.labels?.['smoke.veil.dev/patched']) await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(stored?.metadata?.labels?.['smoke.veil.dev/patched'], 'yes');
    const readBack = await core.readNamespacedPod({ name: 'patched', namespace: 'default' });
    assert.equal(readBack.metadata?.labels?.['smoke.veil.dev/patched'], 'yes');
    assert.ok(hook.calls.length >= 1);
  } finally {
    await hook.server.close();
  }
});

test('helm runs', async () => {
  const { stdout } = await run(infraBinary('helm'), ['version', '--short']);
  assert.match(stdout, /^v4\.\d+\.\d+/);
});
