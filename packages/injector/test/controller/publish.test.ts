// The key publisher against a real kube-apiserver: the controller's CA bundle goes
// beside its public key, a rotation republishes it, an unknown bundle leaves the
// published one alone, and nothing is written when nothing changed.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CoreV1Api } from '@kubernetes/client-node';
import { type ControlPlane, startControlPlane } from '../../../../test/harness/index.ts';
import { CaBundleHolder, FileCaBundle } from '../../src/certs/cabundle.ts';
import { silentLog } from '../../src/controller/log.ts';
import { KeyPublisher } from '../../src/controller/publish.ts';

const jwk = { kty: 'OKP', crv: 'Ed25519', x: 'AAAA', kid: 'k1', alg: 'EdDSA', use: 'sig' };
const caOne = '-----BEGIN CERTIFICATE-----\nONE\n-----END CERTIFICATE-----\n';
const caTwo = '-----BEGIN CERTIFICATE-----\nTWO\n-----END CERTIFICATE-----\n';

let cp: ControlPlane;
let core: CoreV1Api;

before(async () => {
  cp = await startControlPlane();
  core = cp.kubeConfig().makeApiClient(CoreV1Api);
});

after(async () => {
  await cp?.stop();
});

async function freshNamespace(prefix: string): Promise<string> {
  const name = `${prefix}-${randomBytes(3).toString('hex')}`;
  await core.createNamespace({ body: { metadata: { name } } });
  return name;
}

const read = (namespace: string) => core.readNamespacedConfigMap({ namespace, name: 'veil-controller-key' });

function publisher(caBundle?: CaBundleHolder): KeyPublisher {
  return new KeyPublisher({
    api: core,
    publicJwk: jwk,
    name: 'veil-controller-key',
    key: 'jwk.json',
    caBundle,
    log: silentLog,
  });
}

test('the CA bundle is published beside the key, and a new bundle replaces it', async () => {
  const namespace = await freshNamespace('publish-ca');
  const bundle = new CaBundleHolder();
  bundle.set(caOne);
  const keys = publisher(bundle);
  keys.activate([]);
  await keys.ensure(namespace);
  const first = await read(namespace);
  assert.deepEqual(Object.keys(first.data ?? {}).sort(), ['ca.crt', 'jwk.json']);
  assert.equal(first.data?.['ca.crt'], caOne);
  assert.deepEqual(JSON.parse(first.data?.['jwk.json'] ?? '{}'), jwk);

  // Nothing changed: no write.
  await keys.ensure(namespace);
  keys.deactivate();
  keys.activate([namespace]);
  await keys.ensure(namespace);
  assert.equal((await read(namespace)).metadata?.resourceVersion, first.metadata?.resourceVersion);

  // A rotation: current then previous.
  bundle.set(`${caTwo}${caOne}`);
  await keys.ensure(namespace);
  const rotated = await read(namespace);
  assert.equal(rotated.data?.['ca.crt'], `${caTwo}${caOne}`);
  assert.equal(rotated.data?.['jwk.json'], first.data?.['jwk.json']);
});

test('without a known bundle the key is published alone, and a published bundle stays', async () => {
  const namespace = await freshNamespace('publish-noca');
  const bundle = new CaBundleHolder();
  const keys = publisher(bundle);
  keys.activate([namespace]);
  await keys.ensure(namespace);
  assert.deepEqual(Object.keys((await read(namespace)).data ?? {}), ['jwk.json']);

  bundle.set(caOne);
  await keys.ensure(namespace);
  assert.equal((await read(namespace)).data?.['ca.crt'], caOne);

  // A new leader that has not read its bundle yet leaves the published one alone.
  const fresh = publisher(new CaBundleHolder());
  fresh.activate([]);
  const before = (await read(namespace)).metadata?.resourceVersion;
  await fresh.ensure(namespace);
  const after = await read(namespace);
  assert.equal(after.data?.['ca.crt'], caOne);
  assert.equal(after.metadata?.resourceVersion, before);
});

test('a ConfigMap edited by hand gets its bundle back', async () => {
  const namespace = await freshNamespace('publish-edit');
  const bundle = new CaBundleHolder();
  bundle.set(caOne);
  await core.createNamespacedConfigMap({
    namespace,
    body: { metadata: { name: 'veil-controller-key' }, data: { 'jwk.json': 'stale', 'ca.crt': caTwo } },
  });
  const keys = publisher(bundle);
  keys.activate([namespace]);
  await keys.ensure(namespace);
  const fixed = await read(namespace);
  assert.equal(fixed.data?.['ca.crt'], caOne);
  assert.deepEqual(JSON.parse(fixed.data?.['jwk.json'] ?? '{}'), jwk);
  assert.equal(fixed.metadata?.labels?.['app.kubernetes.io/managed-by'], 'veil-controller');
});

test('files mode: the ca.crt beside the pair is read, and read again when it changes', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'veil-ca-'));
  const file = join(dir, 'ca.crt');
  const source = new FileCaBundle({ file, debounceMs: 10 });
  try {
    await source.reload();
    assert.equal(source.current(), undefined, 'absent while the file is');
    const seen: (string | undefined)[] = [];
    source.onChange((bundle) => seen.push(bundle));
    await writeFile(file, caOne);
    await source.reload();
    assert.equal(source.current(), caOne);
    // Replaced whole, as a mounted Secret is: a write in place could be read half done.
    await writeFile(`${file}.next`, caTwo);
    await rename(`${file}.next`, file);
    for (let i = 0; i < 100 && source.current() !== caTwo; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(source.current(), caTwo, 'the directory watch picks the change up');
    await rm(file);
    await source.reload();
    assert.equal(source.current(), undefined);
    assert.deepEqual(seen, [caOne, caTwo, undefined]);
  } finally {
    source.close();
    await rm(dir, { recursive: true, force: true });
  }
});
