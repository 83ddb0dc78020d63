import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import jsonpatch, { type Operation } from 'fast-json-patch';
import { Agent, request } from 'undici';
import { jsonLog } from '../../src/controller/log.ts';
import { admissionReviewResponseSchema } from '../../src/webhook/review.ts';
import {
  startWebhookServer,
  type WebhookServer,
  type WebhookServerOptions,
} from '../../src/webhook/server.ts';
import {
  replaceFile,
  selfSignedCertificate,
  servedFingerprint,
  type TestCertificate,
} from './support/certificates.ts';
import { podReview } from './support/review.ts';
import { injectorUsername, testSettings, testTrust } from './support/settings.ts';

let workDir: string;
let first: TestCertificate;
let second: TestCertificate;

before(() => {
  workDir = mkdtempSync(join(tmpdir(), 'veil-webhook-'));
  first = selfSignedCertificate(workDir, 'first');
  second = selfSignedCertificate(workDir, 'second');
});

after(() => rmSync(workDir, { recursive: true, force: true }));

function writePair(directory: string, pair: TestCertificate): void {
  writeFileSync(join(directory, 'tls.crt'), pair.cert);
  writeFileSync(join(directory, 'tls.key'), pair.key);
}

async function start(
  directory: string,
  extra: Pick<WebhookServerOptions, 'observeReview' | 'log'> = {},
): Promise<WebhookServer> {
  return startWebhookServer({
    ...extra,
    settings: testSettings,
    tls: { certFile: join(directory, 'tls.crt'), keyFile: join(directory, 'tls.key') },
    host: '127.0.0.1',
    port: 0,
    namespaceLabels: async (namespace): Promise<Record<string, string>> =>
      namespace === 'ml' ? { 'veil.dev/injection': 'enabled' } : {},
    bootstrapPolicy: async (_namespace, name) => ({ metadata: { name }, spec: {} }),
    controllerTrust: () => testTrust,
    trustWriters: [injectorUsername],
  });
}

function freshDirectory(name: string): string {
  const directory = join(workDir, name);
  mkdirSync(directory);
  return directory;
}

test('answers a real AdmissionReview over HTTPS with a JSON patch, timing and logging each review', async () => {
  const directory = freshDirectory('review');
  writePair(directory, first);
  const observed: number[] = [];
  const lines: string[] = [];
  const server = await start(directory, {
    observeReview: (ms) => observed.push(ms),
    log: jsonLog('injector', (line) => lines.push(line)),
  });
  const agent = new Agent({ connect: { ca: first.cert } });
  try {
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { generateName: 'embedder-', namespace: 'ml' },
      spec: {
        containers: [
          { name: 'model', image: 'example/model:1', ports: [{ name: 'http', containerPort: 8080 }] },
        ],
      },
    };
    const review = podReview('ml', pod);
    const response = await request(`${server.url}/mutate-pods`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(review),
      dispatcher: agent,
    });
    assert.equal(response.statusCode, 200);
    const answer = admissionReviewResponseSchema.parse(await response.body.json()).response;
    assert.equal(answer.uid, review.request.uid);
    assert.equal(answer.allowed, true);
    assert.equal(answer.patchType, 'JSONPatch');
    const operations = JSON.parse(Buffer.from(answer.patch ?? '', 'base64').toString('utf8')) as Operation[];
    const patched = jsonpatch.applyPatch(structuredClone(pod), operations, true).newDocument as {
      metadata: { labels?: Record<string, string> };
      spec: { initContainers?: { name: string }[] };
    };
    assert.equal(patched.metadata.labels?.['veil.dev/injected'], 'true');
    assert.equal(patched.spec.initContainers?.[0]?.name, 'veil-proxy');
    const logged = lines.map((line) => JSON.parse(line)).filter((entry) => entry.message === 'review');
    assert.deepEqual(
      logged.map(({ uid, operation, outcome }) => ({ uid, operation, outcome })),
      [{ uid: review.request.uid, operation: 'CREATE', outcome: 'injected' }],
    );
    // Never the pod: its env may hold secrets.
    assert.ok(lines.every((line) => !line.includes('example/model:1')));

    const health = await request(`${server.url}/healthz`, { dispatcher: agent });
    assert.equal(health.statusCode, 200);
    assert.equal(await health.body.text(), 'ok');

    const malformed = await request(`${server.url}/mutate-pods`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ apiVersion: 'admission.k8s.io/v1beta1', kind: 'AdmissionReview' }),
      dispatcher: agent,
    });
    assert.equal(malformed.statusCode, 400);
    await malformed.body.dump();
  } finally {
    await agent.close();
    await server.close();
  }
  // Each pod review is timed, answered or refused (by the time the server has
  // closed, every answer is sent); the probe is not a review.
  assert.equal(observed.length, 2);
  assert.ok(observed.every((ms) => Number.isFinite(ms) && ms >= 0));
});

test('serves a certificate replaced in place without a restart', async () => {
  const directory = freshDirectory('in-place');
  writePair(directory, first);
  const server = await start(directory);
  try {
    assert.equal(await servedFingerprint(server.port), first.fingerprint256);
    const reloaded = once(server.certificates, 'reloaded');
    replaceFile(join(directory, 'tls.key'), second.key);
    replaceFile(join(directory, 'tls.crt'), second.cert);
    assert.deepEqual(await reloaded, [second.fingerprint256]);
    assert.equal(await servedFingerprint(server.port), second.fingerprint256);
  } finally {
    await server.close();
  }
});

test('follows a Secret volume update (the ..data symlink swap)', async () => {
  const mount = freshDirectory('secret-mount');
  const version1 = join(mount, '..2025_01_01_00_00_00.000000001');
  mkdirSync(version1);
  writePair(version1, first);
  symlinkSync('..2025_01_01_00_00_00.000000001', join(mount, '..data'));
  symlinkSync('..data/tls.crt', join(mount, 'tls.crt'));
  symlinkSync('..data/tls.key', join(mount, 'tls.key'));
  const server = await start(mount);
  try {
    assert.equal(await servedFingerprint(server.port), first.fingerprint256);
    const reloaded = once(server.certificates, 'reloaded');
    const version2 = join(mount, '..2025_02_01_00_00_00.000000002');
    mkdirSync(version2);
    writePair(version2, second);
    symlinkSync('..2025_02_01_00_00_00.000000002', join(mount, '..data_tmp'));
    renameSync(join(mount, '..data_tmp'), join(mount, '..data'));
    assert.deepEqual(await reloaded, [second.fingerprint256]);
    assert.equal(await servedFingerprint(server.port), second.fingerprint256);
  } finally {
    await server.close();
  }
});

test('keeps the working certificate while the new pair does not match', async () => {
  const directory = freshDirectory('half-rotated');
  writePair(directory, first);
  const server = await start(directory);
  try {
    const rejected = once(server.certificates, 'rejected');
    // Half-way through a rotation: the new certificate, the old key.
    replaceFile(join(directory, 'tls.crt'), second.cert);
    const [error] = (await rejected) as [Error];
    assert.match(error.message, /key values mismatch/);
    assert.equal(await servedFingerprint(server.port), first.fingerprint256);

    const reloaded = once(server.certificates, 'reloaded');
    replaceFile(join(directory, 'tls.key'), second.key);
    assert.deepEqual(await reloaded, [second.fingerprint256]);
    assert.equal(await servedFingerprint(server.port), second.fingerprint256);
  } finally {
    await server.close();
  }
});

test('an explicit reload of unchanged files changes nothing', async () => {
  const directory = freshDirectory('unchanged');
  writePair(directory, first);
  const server = await start(directory);
  try {
    assert.equal(await server.certificates.reload(), false);
    assert.equal(await servedFingerprint(server.port), first.fingerprint256);
  } finally {
    await server.close();
  }
});
