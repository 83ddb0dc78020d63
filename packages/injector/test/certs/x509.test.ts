import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { test } from 'node:test';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { createCertificateAuthority, issueServingCertificate } from '../../src/certs/x509.ts';

const now = new Date('2030-01-01T00:00:00Z');
const validity = { notBefore: now, notAfter: new Date('2031-01-01T00:00:00Z') };
const names = ['veil-injector.veil-system.svc', 'veil-injector.veil-system.svc.cluster.local'];

test('a self-signed CA: its own issuer, a CA, with the given validity', () => {
  const ca = new X509Certificate(createCertificateAuthority('veil-test-ca', validity).cert);
  assert.equal(ca.subject, 'CN=veil-test-ca');
  assert.equal(ca.issuer, 'CN=veil-test-ca');
  assert.equal(ca.ca, true);
  assert.ok(ca.verify(ca.publicKey));
  assert.ok(ca.checkIssued(ca));
  assert.equal(ca.validFromDate.toISOString(), validity.notBefore.toISOString());
  assert.equal(ca.validToDate.toISOString(), validity.notAfter.toISOString());
});

test('a serving certificate: signed by the CA, names every DNS name, serverAuth, not a CA', () => {
  const caPair = createCertificateAuthority('veil-test-ca', validity);
  const ca = new X509Certificate(caPair.cert);
  const pair = issueServingCertificate(caPair, names, validity);
  const leaf = new X509Certificate(pair.cert);
  assert.ok(leaf.verify(ca.publicKey));
  assert.ok(leaf.checkIssued(ca));
  assert.equal(leaf.ca, false);
  for (const name of names) assert.equal(leaf.checkHost(name), name);
  assert.equal(leaf.checkHost('other.veil-system.svc'), undefined);
  assert.deepEqual(leaf.keyUsage, ['1.3.6.1.5.5.7.3.1']);
  assert.ok(leaf.checkPrivateKey(createPrivateKey(pair.key)));
  // Another CA did not sign it.
  const other = new X509Certificate(createCertificateAuthority('veil-test-ca', validity).cert);
  assert.equal(leaf.verify(other.publicKey), false);
});

test('dates after 2049 are GeneralizedTime and still parse', () => {
  const far = { notBefore: now, notAfter: new Date('2061-06-30T12:00:00Z') };
  const ca = new X509Certificate(createCertificateAuthority('veil-test-ca', far).cert);
  assert.equal(ca.validToDate.toISOString(), far.notAfter.toISOString());
});

test('a TLS client verifies the chain and the name against the CA alone', async () => {
  const from = new Date(Date.now() - 60_000);
  const live = { notBefore: from, notAfter: new Date(from.getTime() + 3_600_000) };
  const caPair = createCertificateAuthority('veil-test-ca', live);
  const server = createServer(issueServingCertificate(caPair, names, live), (socket) => socket.end());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  try {
    const socket: TLSSocket = connect({ host: '127.0.0.1', port, servername: names[0], ca: caPair.cert });
    await once(socket, 'secureConnect');
    assert.equal(socket.authorized, true);
    socket.destroy();
  } finally {
    server.close();
  }
});
