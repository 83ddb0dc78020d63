// The admin port's transport: plain HTTP for probes and metrics, TLS for the
// controller, on one port. Pushes are refused over plain HTTP; over TLS the
// sidecar shows a certificate the controller's CA issued for this pod alone,
// fetched at start without holding it up, and fetched again when the
// controller's key is rotated.
import assert from 'node:assert/strict';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createServer, type TLSSocket, connect as tlsConnect } from 'node:tls';
import { policyHash } from '@veil/core';
import { type CryptoKey, exportJWK, generateKeyPair, type JWK } from 'jose';
import { startAdminCertificate } from '../../src/admin/certificate.ts';
import { sidecarConfigSchema } from '../../src/config.ts';
import { startSidecar } from '../../src/sidecar.ts';
import { controllerToken } from '../fixtures/controllertoken.ts';
import { POD_TOKEN, startCertificateStandIn } from '../fixtures/podcerts.ts';
import { call, POD_UID, type SidecarFixture, startSidecarFixture, testPolicy } from '../fixtures/sidecar.ts';

async function controllerKey(): Promise<{ privateKey: CryptoKey; jwk: JWK }> {
  const pair = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  return { privateKey: pair.privateKey, jwk: { ...(await exportJWK(pair.privateKey)), alg: 'EdDSA' } };
}

function pushToken(key: CryptoKey, policy: { name: string; hash: string }): Promise<string> {
  return controllerToken(key, { policy });
}

async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  for (let attempt = 0; attempt < 1000; attempt++) {
    if (await check()) return;
    await sleep(20);
  }
  throw new Error(`never: ${what}`);
}

/** How a TLS handshake with `port` ends, trusting `ca` and expecting `servername`. */
async function handshake(port: number, ca: string, servername: string): Promise<string> {
  return new Promise((resolve) => {
    const socket: TLSSocket = tlsConnect({ host: '127.0.0.1', port, ca, servername });
    socket.once('secureConnect', () => {
      socket.destroy();
      resolve('ok');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      socket.destroy();
      resolve(error.code ?? error.message);
    });
  });
}

const portOf = (url: string) => Number(new URL(url).port);

describe('admin port over TLS', () => {
  let fixture: SidecarFixture;
  let key: CryptoKey;

  before(async () => {
    const controller = await controllerKey();
    key = controller.privateKey;
    fixture = await startSidecarFixture({ controllerKey: controller.jwk, config: { policyName: 'test' } });
  });
  after(() => fixture.close());

  it('refuses a push over plain HTTP, applying nothing and spending no token; the same push over TLS is taken', async () => {
    const tls = fixture.adminTls;
    assert.ok(tls);
    const next = testPolicy([fixture.issuer], { limits: { vectorsPerMinute: 1234 } });
    const body = { name: 'test', spec: next };
    const token = await pushToken(key, { name: 'test', hash: policyHash(next) });
    const before = fixture.sidecar.store.current();

    const plain = await call(`${fixture.adminUrl}/v1/policy`, body, { method: 'PUT', token });
    assert.equal(plain.status, 403);
    assert.deepEqual(plain.json, { status: 'nack', reason: 'pushes must use HTTPS' });
    assert.equal(fixture.sidecar.store.current(), before);

    const secure = await call(`${tls.url}/v1/policy`, body, {
      method: 'PUT',
      token,
      dispatcher: tls.dispatcher,
    });
    assert.equal(secure.status, 200, secure.text);
    assert.deepEqual(secure.json, { status: 'ack', hash: policyHash(next) });
  });

  it('answers probes and metrics in plain HTTP on the same port, and reads over TLS too', async () => {
    const tls = fixture.adminTls;
    assert.ok(tls);
    for (const path of ['/healthz', '/readyz', '/metrics', '/v1/policy'])
      assert.equal((await call(`${fixture.adminUrl}${path}`)).status, 200, path);
    const read = await call(`${tls.url}/v1/policy`, undefined, { dispatcher: tls.dispatcher });
    assert.equal(read.status, 200);
    assert.equal((read.json as { hash: string }).hash, fixture.sidecar.store.current()?.hash);
  });

  it("shows a certificate for this pod only, from the controller's CA only", async () => {
    const tls = fixture.adminTls;
    assert.ok(tls);
    const port = portOf(fixture.adminUrl);
    assert.equal(await handshake(port, tls.certificates.caCert, `${POD_UID}.pod.veil.internal`), 'ok');
    assert.equal(
      await handshake(port, tls.certificates.caCert, 'pod-4567.pod.veil.internal'),
      'ERR_TLS_CERT_ALTNAME_INVALID',
    );
    const other = await startCertificateStandIn((await controllerKey()).jwk, POD_UID);
    try {
      assert.equal(
        await handshake(port, other.caCert, `${POD_UID}.pod.veil.internal`),
        'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
      );
    } finally {
      await other.close();
    }
  });
});

describe('admin certificate', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'veil-admin-tls-'));
    await writeFile(join(dir, 'token'), POD_TOKEN);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('does not hold up the start: TLS fails until the controller certifies the pod, probes answer meanwhile', async () => {
    const controller = await controllerKey();
    const certificates = await startCertificateStandIn(controller.jwk, POD_UID);
    certificates.refuse(true);
    const { d: _private, ...publicJwk } = controller.jwk;
    await writeFile(join(dir, 'controller.jwk'), JSON.stringify(publicJwk));
    const sidecar = await startSidecar(
      sidecarConfigSchema.parse({
        upstream: 'http://127.0.0.1:9',
        host: '127.0.0.1',
        proxyPort: 0,
        adminHost: '127.0.0.1',
        adminPort: 0,
        controllerKeyFile: join(dir, 'controller.jwk'),
        controllerUrl: certificates.url,
        controllerTokenFile: join(dir, 'token'),
        pod: { namespace: 'test', name: 'embed-0', uid: POD_UID },
      }),
      { pullBackoff: { baseMs: 5, capMs: 20 }, log: () => undefined },
    );
    try {
      const port = portOf(sidecar.adminUrl);
      const servername = `${POD_UID}.pod.veil.internal`;
      assert.equal((await call(`${sidecar.adminUrl}/healthz`)).status, 200);
      assert.notEqual(await handshake(port, certificates.caCert, servername), 'ok');
      certificates.refuse(false);
      assert.equal(await sidecar.adminCertificate, true);
      assert.equal(await handshake(port, certificates.caCert, servername), 'ok');
    } finally {
      await sidecar.close();
      await certificates.close();
    }
  });

  it('is renewed by this clock, not the dates of a controller whose clock is hours behind', async () => {
    const certificates = await startCertificateStandIn((await controllerKey()).jwk, POD_UID);
    // Dated 13 hours back: by this clock past half its life the moment it arrives.
    certificates.skew(-13 * 3600 * 1000);
    const certificate = startAdminCertificate({
      url: certificates.url,
      tokenFile: join(dir, 'token'),
      backoff: { baseMs: 5, capMs: 20 },
    });
    try {
      assert.equal(await certificate.ready, true);
      await sleep(300);
      assert.equal(certificates.issued(), 1, 'one certificate, not a fetch after each');
    } finally {
      await certificate.close();
      await certificates.close();
    }
  });

  it("is fetched again from the new CA when the controller's key file names a new key", async () => {
    const first = await controllerKey();
    const second = await controllerKey();
    const certificates = await startCertificateStandIn(first.jwk, POD_UID);
    const keyFile = join(dir, 'rotating.jwk');
    const publish = async (jwk: JWK) => {
      const { d: _private, ...publicJwk } = jwk;
      await writeFile(`${keyFile}.new`, JSON.stringify(publicJwk));
      await rename(`${keyFile}.new`, keyFile);
    };
    await publish(first.jwk);
    const certificate = startAdminCertificate({
      url: certificates.url,
      tokenFile: join(dir, 'token'),
      controllerKeyFile: keyFile,
      backoff: { baseMs: 5, capMs: 20 },
      keyCheckMs: 10,
    });
    const server = createServer({ SNICallback: (_name, done) => done(null, certificate.context()) });
    server.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const port = (server.address() as { port: number }).port;
    const servername = `${POD_UID}.pod.veil.internal`;
    try {
      assert.equal(await certificate.ready, true);
      const firstCa = certificates.caCert;
      assert.equal(await handshake(port, firstCa, servername), 'ok');

      // The key file changes before the controller restarts with the new key:
      // what the old key still issues is not enough, and the old certificate serves meanwhile.
      await publish(second.jwk);
      const issuedBefore = certificates.issued();
      await until('certificates asked for again', async () => certificates.issued() >= issuedBefore + 2);
      assert.equal(await handshake(port, firstCa, servername), 'ok');

      await certificates.rotate(second.jwk);
      const secondCa = certificates.caCert;
      await until(
        'a certificate from the new CA',
        async () => (await handshake(port, secondCa, servername)) === 'ok',
      );
      assert.notEqual(await handshake(port, firstCa, servername), 'ok');
    } finally {
      server.close();
      await certificate.close();
      await certificates.close();
    }
  });
});
