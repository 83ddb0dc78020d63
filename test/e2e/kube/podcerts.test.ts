// The controller certifies sidecars' admin ports (POST /v1/certificates on the
// pull endpoint), against the real API server: the TokenReview must bind the
// token to a pod, and that pod must be an injected pod of the token's own
// namespace. Tokens are minted through the TokenRequest API as the kubelet
// mints a pod's projected token.
import assert from 'node:assert/strict';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import { CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import { podServerName, type RunningInjector } from '@veil/injector';
import { Agent, request } from 'undici';
import { type ControlPlane, freePort, startControlPlane } from '../../harness/index.ts';
import { freshNamespace, installCrds, podToken } from './support/cluster.ts';
import {
  deleteWebhook,
  ensureInjectorNamespace,
  injectorFiles,
  modelPod,
  registerWebhook,
  startTestInjector,
  waitForWebhook,
} from './support/injector.ts';

let cp: ControlPlane;
let injector: RunningInjector | undefined;
let webhookName: string | undefined;
let agent: Agent;
let core: CoreV1Api;
let signingKeyFile: string;

before(async () => {
  cp = await startControlPlane();
  await installCrds(cp);
  await ensureInjectorNamespace(cp);
  const files = await injectorFiles(cp, { adminPort: await freePort() });
  signingKeyFile = files.signingKeyFile;
  injector = await startTestInjector(cp, files);
  webhookName = await registerWebhook(cp, injector.webhook.url);
  await waitForWebhook(cp, await freshNamespace(cp, 'webhook-ready'));
  agent = new Agent({ connect: { ca: await readFile(cp.caCert, 'utf8') } });
  core = cp.kubeConfig().makeApiClient(CoreV1Api);
});
after(async () => {
  await agent?.close();
  if (webhookName) await deleteWebhook(cp, webhookName).catch(() => undefined);
  await injector?.close();
  await cp?.stop();
});

/** A pod, injected when `inject`, with its service account; as stored. */
async function pod(namespace: string, name: string, inject: boolean): Promise<V1Pod> {
  await core
    .createNamespacedServiceAccount({ namespace, body: { metadata: { name: 'default' } } })
    .catch((error: { code?: number }) => {
      if (error.code !== 409) throw error;
    });
  return core.createNamespacedPod({
    namespace,
    body: modelPod(name, inject ? { 'veil.dev/inject': 'true' } : {}),
  });
}

const publicKeyPem = () =>
  generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
    .publicKey.export({ type: 'spki', format: 'pem' })
    .toString();

async function ask(token: string | undefined, body: unknown = { publicKey: publicKeyPem() }) {
  const response = await request(`${injector?.pull.url}/v1/certificates`, {
    method: 'POST',
    dispatcher: agent,
    headers: {
      'content-type': 'application/json',
      ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
    },
    body: JSON.stringify(body),
  });
  return { status: response.statusCode, json: (await response.body.json()) as Record<string, string> };
}

/** Until the informer has the pod: the answer for a pod the controller has seen. */
async function askOnceKnown(token: string, body?: unknown) {
  for (let attempt = 0; ; attempt++) {
    const answer = await ask(token, body);
    if (answer.status !== 403 || attempt >= 200) return answer;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

test("an injected pod's bound token gets a certificate for its key, naming its UID, from the key's CA", async () => {
  const namespace = await freshNamespace(cp, 'certs');
  const injected = await pod(namespace, 'embedder', true);
  assert.equal(injected.metadata?.labels?.['veil.dev/injected'], 'true');
  const uid = injected.metadata?.uid ?? '';
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const answer = await askOnceKnown(await podToken(cp, injected), {
    publicKey: publicKey.export({ type: 'spki', format: 'pem' }),
  });
  assert.equal(answer.status, 200, JSON.stringify(answer.json));
  const leaf = new X509Certificate(answer.json.certificate ?? '');
  const ca = new X509Certificate(answer.json.ca ?? '');
  assert.ok(leaf.verify(ca.publicKey));
  assert.ok(leaf.checkPrivateKey(privateKey));
  assert.equal(leaf.checkHost(podServerName(uid)), podServerName(uid));
  assert.equal(leaf.checkHost(podServerName('another-pod')), undefined);
  assert.ok(leaf.validToDate.getTime() - leaf.validFromDate.getTime() <= 25 * 3_600_000);
  // The CA is the controller's push-signing key itself.
  const jwk = JSON.parse(await readFile(signingKeyFile, 'utf8')) as { x: string };
  assert.equal(ca.publicKey.export({ format: 'jwk' }).x, jwk.x);
});

test('refuses a token not bound to a pod, a pod not injected, and an injected pod of another namespace', async () => {
  const namespace = await freshNamespace(cp, 'certs-refused');
  const elsewhere = await freshNamespace(cp, 'certs-elsewhere');
  const plain = await pod(namespace, 'embedder', false);
  assert.equal(plain.metadata?.labels?.['veil.dev/injected'], undefined);
  // The same name, injected, in another namespace: it must not vouch for the first.
  const twin = await pod(elsewhere, 'embedder', true);
  assert.equal(twin.metadata?.labels?.['veil.dev/injected'], 'true');
  const injected = await pod(namespace, 'injected', true);
  // Known to the controller before the refusals are looked at.
  assert.equal((await askOnceKnown(await podToken(cp, injected))).status, 200);
  assert.equal((await askOnceKnown(await podToken(cp, twin))).status, 200);

  const unbound = await ask(await podToken(cp, injected, false));
  assert.equal(unbound.status, 403);
  assert.match(unbound.json.error ?? '', /not bound to a pod/);

  const notInjected = await ask(await podToken(cp, plain));
  assert.equal(notInjected.status, 403);
  assert.match(notInjected.json.error ?? '', new RegExp(`pod ${namespace}/embedder is not an injected pod`));

  assert.equal((await ask(undefined)).status, 401);
  assert.equal((await ask('not-a-token')).status, 401);
});

test('refuses a body that is not a P-256 or Ed25519 public key with 400', async () => {
  const namespace = await freshNamespace(cp, 'certs-body');
  const token = await podToken(cp, await pod(namespace, 'embedder', true));
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({
    type: 'spki',
    format: 'pem',
  });
  const privatePem = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
    .privateKey.export({ type: 'pkcs8', format: 'pem' })
    .toString();
  for (const body of [{}, { publicKey: 'junk' }, { publicKey: rsa }, { publicKey: privatePem }]) {
    const answer = await ask(token, body);
    assert.equal(answer.status, 400, JSON.stringify(body).slice(0, 40));
    assert.match(answer.json.error ?? '', /P-256 or Ed25519/);
  }
});
