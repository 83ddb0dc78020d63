// The controller's side of a push: TLS to the pod's admin port, trusting only
// the CA built from its own key and only a certificate naming that pod's UID.
// Anything else that answers at the address is a failed delivery, never an ACK.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import { Agent } from 'undici';
import { controllerKeyFromJwk, generateControllerJwk } from '../../src/controller/keys.ts';
import { SidecarClient } from '../../src/controller/push.ts';
import { FakeSidecar } from './support/sidecar.ts';

const key = await controllerKeyFromJwk(await generateControllerJwk());
const otherKey = await controllerKeyFromJwk(await generateControllerJwk());
const client = new SidecarClient({ key, identity: 'controller-0', timeoutMs: 2000 });
const policy = { name: 'default', hash: 'sha256:v1', spec: { hash: 'sha256:v1' } };
const stops: (() => Promise<unknown>)[] = [];

after(async () => {
  await client.close();
  for (const stop of stops) await stop();
});

async function sidecar(uid: string, options: { certificateOf?: string; issuer?: typeof key } = {}) {
  const made = new FakeSidecar(uid, options.issuer ?? key);
  if (options.certificateOf) made.certificateOf = options.certificateOf;
  await made.start();
  stops.push(() => made.stop());
  return made;
}

test("a sidecar showing its own pod's certificate is read and ACKs", async () => {
  const pod = await sidecar('pod-a');
  assert.deepEqual(await client.read({ uid: 'pod-a', adminUrl: pod.adminUrl }), { kind: 'none' });
  assert.deepEqual(await client.push({ uid: 'pod-a', adminUrl: pod.adminUrl }, policy), {
    kind: 'ack',
    hash: 'sha256:v1',
  });
  assert.equal(pod.puts.length, 1);
});

test("another pod's certificate, even from this CA, is a delivery error: nothing is sent", async () => {
  const impostor = await sidecar('pod-b', { certificateOf: 'pod-c' });
  const target = { uid: 'pod-b', adminUrl: impostor.adminUrl };
  const read = await client.read(target);
  assert.equal(read.kind, 'error');
  assert.match((read as { reason: string }).reason, /ERR_TLS_CERT_ALTNAME_INVALID/);
  const pushed = await client.push(target, policy);
  assert.equal(pushed.kind, 'error');
  assert.match((pushed as { reason: string }).reason, /ERR_TLS_CERT_ALTNAME_INVALID/);
  assert.equal(impostor.puts.length, 0);
  assert.equal(impostor.gets, 0);
});

test("a certificate from another controller's CA is a delivery error", async () => {
  const stranger = await sidecar('pod-d', { issuer: otherKey });
  const pushed = await client.push({ uid: 'pod-d', adminUrl: stranger.adminUrl }, policy);
  assert.equal(pushed.kind, 'error');
  assert.equal(stranger.puts.length, 0);
});

test('a plain-HTTP server answering an ACK at the address is a delivery error', async () => {
  let requests = 0;
  const forger = createServer((_request, response) => {
    requests += 1;
    response
      .writeHead(200, { 'content-type': 'application/json' })
      .end('{"status":"ack","hash":"sha256:v1"}');
  });
  forger.listen(0, '127.0.0.1');
  await once(forger, 'listening');
  stops.push(async () => {
    forger.closeAllConnections();
    forger.close();
  });
  const adminUrl = `https://127.0.0.1:${(forger.address() as AddressInfo).port}`;
  const pushed = await client.push({ uid: 'pod-e', adminUrl }, policy);
  assert.equal(pushed.kind, 'error');
  assert.equal(requests, 0);
});

test('a revocation goes to its own pod only, and is taken only with the name it carries', async () => {
  const pod = await sidecar('pod-f', { certificateOf: 'pod-f' });
  pod.hash = 'sha256:v1';
  assert.deepEqual(
    await client.revoke({ uid: 'pod-f', adminUrl: pod.adminUrl }, { name: 'default', hash: 'sha256:v1' }),
    { kind: 'ack' },
  );
  assert.deepEqual(
    pod.deletes.map((d) => d.claims.revoke),
    [{ name: 'default', hash: 'sha256:v1' }],
  );
  assert.equal(pod.hash, undefined);

  const impostor = await sidecar('pod-g', { certificateOf: 'pod-h' });
  const revoked = await client.revoke(
    { uid: 'pod-g', adminUrl: impostor.adminUrl },
    { name: 'default', hash: 'sha256:v1' },
  );
  assert.equal(revoked.kind, 'error');
  assert.equal(impostor.deletes.length, 0);

  pod.behaviour = 'nack';
  assert.deepEqual(
    await client.revoke({ uid: 'pod-f', adminUrl: pod.adminUrl }, { name: 'other', hash: 'sha256:v1' }),
    {
      kind: 'nack',
      reason: 'enforces default, not other',
    },
  );
});

test('a push aborted while its token is signed, its pod forgotten meanwhile, leaves no connection pool behind', async (t) => {
  const pod = await sidecar('pod-gone');
  const gone = new AbortController();
  const slowKey = {
    ...key,
    authority: key.authority,
    // Signing yields, as WebCrypto's does: the pod goes away in between.
    sign: async (claims: Parameters<typeof key.sign>[0]) => {
      const token = await key.sign(claims);
      gone.abort();
      ownClient.forget('pod-gone');
      return token;
    },
  };
  const ownClient = new SidecarClient({ key: slowKey, identity: 'controller-0', timeoutMs: 2000 });
  const pushed = await ownClient.push({ uid: 'pod-gone', adminUrl: pod.adminUrl }, policy, gone.signal);
  assert.equal(pushed.kind, 'error');
  const closing = t.mock.method(Agent.prototype, 'close');
  await ownClient.close();
  assert.equal(closing.mock.callCount(), 0, 'no pool was made for the forgotten pod');
  assert.equal(pod.puts.length, 0);
});

test("a sidecar's answer is read up to 64 KiB, no further", async () => {
  const pod = await sidecar('pod-verbose');
  pod.padding = 'x'.repeat(200 * 1024);
  const pushed = await client.push({ uid: 'pod-verbose', adminUrl: pod.adminUrl }, policy);
  assert.equal(pushed.kind, 'error');
  assert.match((pushed as { reason: string }).reason, /exceeds 65536 bytes/);
});
