// The admin-port CA built from the controller's Ed25519 key, and the pod
// certificates it issues: parsed and verified by Node, the same CA from every
// build, and a pod's certificate good for that pod's name only.
import assert from 'node:assert/strict';
import { createPrivateKey, generateKeyPairSync, type JsonWebKeyInput, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { test } from 'node:test';
import { connect, createServer } from 'node:tls';
import { podCertificateAuthority, podServerName } from '../../src/certs/podcerts.ts';
import { controllerKeyFromJwk, generateControllerJwk } from '../../src/controller/keys.ts';

const jwk = await generateControllerJwk();
const key = await controllerKeyFromJwk(jwk);
const podA = '0f3a1c9e-5b7d-4e21-9c8a-2d6f4b1e7a30';
const podB = '7c2e9b14-8a3f-4d56-b1e0-93f5a2c8d4e7';

test('the CA is self-signed by the controller key, a CA, named after the key id', () => {
  const ca = new X509Certificate(key.authority.caCert);
  assert.equal(ca.subject, `CN=veil-controller ${key.kid}`);
  assert.equal(ca.issuer, ca.subject);
  assert.equal(ca.ca, true);
  assert.ok(ca.verify(ca.publicKey));
  assert.equal(ca.publicKey.asymmetricKeyType, 'ed25519');
  assert.equal(ca.publicKey.export({ format: 'jwk' }).x, key.publicJwk.x);
});

test('every build of the CA from one key is byte for byte the same; another key makes another', async () => {
  const again = await controllerKeyFromJwk(jwk);
  assert.equal(again.authority.caCert, key.authority.caCert);
  const direct = podCertificateAuthority(
    createPrivateKey({ key: jwk as JsonWebKeyInput['key'], format: 'jwk' }),
    key.kid,
  );
  assert.equal(direct.caCert, key.authority.caCert);
  const other = await controllerKeyFromJwk(await generateControllerJwk());
  assert.notEqual(other.authority.caCert, key.authority.caCert);
});

test("a pod's certificate: from the CA, for the key sent, naming that pod only, a day long", () => {
  const ca = new X509Certificate(key.authority.caCert);
  for (const pair of [
    generateKeyPairSync('ec', { namedCurve: 'prime256v1' }),
    generateKeyPairSync('ed25519'),
  ]) {
    const now = new Date('2031-03-04T05:06:07Z');
    const issued = key.authority.issue(pair.publicKey, podA, now);
    const leaf = new X509Certificate(issued.cert);
    assert.ok(leaf.verify(ca.publicKey));
    assert.ok(leaf.checkIssued(ca));
    assert.equal(leaf.ca, false);
    assert.ok(leaf.checkPrivateKey(pair.privateKey));
    assert.equal(leaf.checkHost(podServerName(podA)), podServerName(podA));
    assert.equal(leaf.checkHost(podServerName(podB)), undefined);
    assert.deepEqual(leaf.keyUsage, ['1.3.6.1.5.5.7.3.1']);
    assert.ok(leaf.validFromDate < now);
    assert.equal(leaf.validToDate.getTime(), now.getTime() + 24 * 3_600_000);
    assert.equal(leaf.validToDate.getTime(), issued.notAfter.getTime());
  }
});

test('refuses a key it cannot certify and a UID that is no DNS label', () => {
  assert.throws(() =>
    key.authority.issue(generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey, podA),
  );
  assert.throws(
    () => key.authority.issue(generateKeyPairSync('ed25519').publicKey, 'a.b'),
    /a pod UID must be a DNS label/,
  );
});

test("over TLS, a client trusting the CA takes pod A's certificate as pod A, and refuses it as pod B", async () => {
  const pair = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const server = createServer(
    {
      key: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }),
      cert: key.authority.issue(pair.publicKey, podA).cert,
    },
    (socket) => socket.end(),
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  const attempt = (servername: string) =>
    new Promise<string>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port, servername, ca: key.authority.caCert });
      socket.once('secureConnect', () => {
        socket.destroy();
        resolve('ok');
      });
      socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
    });
  try {
    assert.equal(await attempt(podServerName(podA)), 'ok');
    assert.equal(await attempt(podServerName(podB)), 'ERR_TLS_CERT_ALTNAME_INVALID');
  } finally {
    server.close();
  }
});
