// What a sidecar trusts the controller by, end to end: the key and CA bundle come
// from its pod's annotations, which only the injector changes, so a namespace's
// editors cannot make a sidecar take their pushes by writing the namespace's
// ConfigMaps or Secrets; and a rotated controller key reaches a running sidecar
// through those annotations. Pods are stand-ins (support/standins.ts explains
// how), their controller-key volume synced from its sources as a kubelet does.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CoreV1Api } from '@kubernetes/client-node';
import { policyHash, policySpecSchema, sidecarPolicySpec } from '@veil/core';
import {
  controllerKeyFromJwk,
  generateControllerJwk,
  loadControllerKey,
  type RunningInjector,
} from '@veil/injector';
import { startDemoModel } from '@veil/sidecar';
import { Agent, request } from 'undici';
import { type ControlPlane, freePort, startControlPlane } from '../../harness/index.ts';
import { applyPolicy, eventually, freshNamespace, installCrds, namespaceUser } from './support/cluster.ts';
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

let cp: ControlPlane;
let files: InjectorFiles;
let adminPort: number;
/** Fixed, so a replica started with a new key answers where the webhook and sidecars call. */
let ports: { webhookPort: number; pullPort: number };
let injector: RunningInjector | undefined;
let webhookName: string | undefined;
let model: Awaited<ReturnType<typeof startDemoModel>>;
const standIns: StandIn[] = [];

const controllerSettings = { leaseDurationSeconds: 15, leaseRenewSeconds: 5 };

before(async () => {
  cp = await startControlPlane();
  await installCrds(cp);
  await ensureInjectorNamespace(cp);
  adminPort = await freePort();
  ports = { webhookPort: await freePort(), pullPort: await freePort() };
  files = await injectorFiles(cp, { adminPort });
  injector = await startTestInjector(cp, files, { ...controllerSettings, ...ports });
  webhookName = await registerWebhook(cp, injector.webhook.url);
  await waitForWebhook(cp, await freshNamespace(cp, 'webhook-ready'));
  model = await startDemoModel();
});
after(async () => {
  await Promise.all(standIns.map((s) => s.close()));
  if (webhookName) await deleteWebhook(cp, webhookName).catch(() => undefined);
  await injector?.close();
  await model?.close();
  await cp?.stop();
});

const strict = { access: { rules: [{ name: 'team', groups: ['ml-team'] }] } };
const lenient = { access: { rules: [{ name: 'anyone', groups: ['system:authenticated'] }] } };
const hashOf = (value: unknown) => policyHash(policySpecSchema.parse(value));

async function standInFor(namespace: string): Promise<StandIn> {
  const controller = { url: injector?.pull.url ?? '', caFile: cp.caCert };
  const [standIn] = await startStandIns({
    cp,
    namespace,
    count: 1,
    adminPort,
    modelUrl: model.url,
    controller,
  });
  if (standIn === undefined) throw new Error('no stand-in');
  standIns.push(standIn);
  return standIn;
}

/** A user holding what the usual namespace "edit" role gives over ConfigMaps, Secrets and pods. */
async function namespaceEditor(namespace: string): Promise<CoreV1Api> {
  const verbs = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'];
  return namespaceUser(cp, namespace, 'editor', [
    { apiGroups: [''], resources: ['configmaps', 'secrets', 'pods'], verbs },
  ]);
}

/** `data` as the ConfigMap and the Secret the controller key settings can name, created or replaced. */
async function writeKeyObjects(editor: CoreV1Api, namespace: string, data: Record<string, string>) {
  const name = 'veil-controller-key';
  const configMap = { metadata: { name, namespace }, data };
  await editor
    .replaceNamespacedConfigMap({ namespace, name, body: configMap })
    .catch(() => editor.createNamespacedConfigMap({ namespace, body: configMap }));
  await editor.createNamespacedSecret({
    namespace,
    body: { metadata: { name, namespace }, stringData: data },
  });
}

test("a push signed by a key the namespace's editors wrote into its ConfigMap and Secret is refused", async () => {
  const namespace = await freshNamespace(cp, 'tenant-key');
  await applyPolicy(cp, namespace, 'default', strict);
  const standIn = await standInFor(namespace);
  await waitForHash([standIn], hashOf(strict));

  // The probe: the tenant's own key wherever a namespace object could hold it.
  const tenantJwk = await generateControllerJwk();
  const tenantKey = await controllerKeyFromJwk(tenantJwk);
  const editor = await namespaceEditor(namespace);
  await writeKeyObjects(editor, namespace, { 'jwk.json': JSON.stringify(tenantKey.publicJwk) });
  // Several of the stand-in's volume syncs: a volume sourced from those objects would have the tenant's key now.
  await sleep(1000);

  // From the model container: the same pod network, the admin port over TLS.
  const token = await tenantKey.sign({
    podUid: standIn.uid,
    subject: 'tenant',
    policy: { name: 'default', hash: hashOf(lenient) },
  });
  const admin = new URL(standIn.sidecar.adminUrl);
  const dispatcher = new Agent({ connect: { rejectUnauthorized: false } });
  try {
    const response = await request(`https://${admin.host}/v1/policy`, {
      method: 'PUT',
      dispatcher,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'default', spec: sidecarPolicySpec(policySpecSchema.parse(lenient)) }),
    });
    const body = await response.body.text();
    assert.equal(response.statusCode, 401, body);
    assert.match(body, /push not signed by the controller/);
  } finally {
    await dispatcher.close();
  }
  const enforced = (await (await fetch(`${standIn.sidecar.adminUrl}/v1/policy`)).json()) as { hash?: string };
  assert.equal(enforced.hash, hashOf(strict), 'the sidecar enforces what the controller pushed');
});

test("a rotated controller key reaches a running sidecar through its pod's annotation", async () => {
  const namespace = await freshNamespace(cp, 'rotation');
  await applyPolicy(cp, namespace, 'default', strict);
  const standIn = await standInFor(namespace);
  await waitForHash([standIn], hashOf(strict));
  const core = cp.kubeConfig().makeApiClient(CoreV1Api);

  // The next release's replica, with a new signing key, where the last one answered.
  await injector?.close();
  injector = undefined;
  await writeFile(files.signingKeyFile, JSON.stringify(await generateControllerJwk()), { mode: 0o600 });
  const rotatedKey = await loadControllerKey(files.signingKeyFile);
  injector = await startTestInjector(cp, files, { ...controllerSettings, ...ports });

  await eventually('the new key on the running pod', async () => {
    const pod = await core.readNamespacedPod({ namespace, name: standIn.name });
    return pod.metadata?.annotations?.['veil.dev/controller-key'] === JSON.stringify(rotatedKey.publicJwk)
      ? true
      : undefined;
  });
  // Signed with the new key only: the sidecar takes it once its file holds that key.
  await applyPolicy(cp, namespace, 'default', lenient);
  // The sidecar renews its admin certificate from the new key within its key check (30 s).
  await waitForHash([standIn], hashOf(lenient), 90_000);
});
