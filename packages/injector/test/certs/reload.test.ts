// A rotated certificate is served only while it is valid: an expired one, or
// one not valid yet, would cut every client off. Every HTTPS port of the
// injector says what it served and what it refused.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import fastify from 'fastify';
import { type HttpsListener, listenHttps, tlsOptions } from '../../src/certs/listening.ts';
import {
  type CertificateAndKey,
  createCertificateAuthority,
  issueServingCertificate,
} from '../../src/certs/x509.ts';
import { jsonLog } from '../../src/controller/log.ts';
import { replaceFile, servedFingerprint } from '../webhook/support/certificates.ts';

const hourMs = 3_600_000;
const names = ['localhost'];
let workDir: string;
let ca: CertificateAndKey;

before(() => {
  workDir = mkdtempSync(join(tmpdir(), 'veil-reload-'));
  const now = Date.now();
  ca = createCertificateAuthority('veil-reload-ca', {
    notBefore: new Date(now - 1000 * hourMs),
    notAfter: new Date(now + 1000 * hourMs),
  });
});

after(() => rmSync(workDir, { recursive: true, force: true }));

/** A serving certificate valid from `fromHours` to `toHours` from now. */
function issued(fromHours: number, toHours: number): CertificateAndKey {
  const now = Date.now();
  return issueServingCertificate(ca, names, {
    notBefore: new Date(now + fromHours * hourMs),
    notAfter: new Date(now + toHours * hourMs),
  });
}

const fingerprint = (pair: CertificateAndKey) => new X509Certificate(pair.cert).fingerprint256;

/** Key then certificate, each renamed over, as a rotation writes them. */
function writePair(directory: string, pair: CertificateAndKey): void {
  for (const [file, content] of [
    ['tls.key', pair.key],
    ['tls.crt', pair.cert],
  ] as const) {
    replaceFile(join(directory, file), content);
  }
}

async function listen(
  name: string,
  initial: CertificateAndKey,
): Promise<{ listener: HttpsListener; directory: string; lines: string[] }> {
  const directory = mkdtempSync(join(workDir, `${name}-`));
  writePair(directory, initial);
  const lines: string[] = [];
  const app = fastify({ https: { ...tlsOptions, ...initial }, logger: false });
  app.get('/', async () => 'ok');
  const listener = await listenHttps(app, {
    files: { certFile: join(directory, 'tls.crt'), keyFile: join(directory, 'tls.key') },
    initial,
    host: '127.0.0.1',
    port: 0,
    closeGraceMs: 100,
    log: jsonLog('test', (line) => lines.push(line)),
  });
  return { listener, directory, lines };
}

for (const [what, replacement] of [
  ['expired', () => issued(-48, -1)],
  ['not valid yet', () => issued(1, 48)],
] as const) {
  test(`a new certificate ${what} is refused, and the one served stays`, async () => {
    const current = issued(-1, 24);
    const { listener, directory, lines } = await listen(what.replaceAll(' ', '-'), current);
    try {
      const refused = Promise.race([
        once(listener.certificates, 'rejected'),
        once(listener.certificates, 'reloaded').then(() => assert.fail(`the ${what} certificate was served`)),
      ]);
      writePair(directory, replacement());
      const [error] = (await refused) as [Error];
      assert.match(
        error.message,
        what === 'expired' ? /tls\.crt expired at / : /tls\.crt is not valid before /,
      );
      assert.equal(await listener.certificates.reload(), false);
      assert.equal(await servedFingerprint(listener.port), fingerprint(current));
      const warned = lines.map((line) => JSON.parse(line)).find((line) => line.level === 'warn');
      assert.equal(warned?.message, 'certificate files not usable: the certificate served stays');
      assert.equal(warned?.url, listener.url);
      assert.equal(warned?.error, error.message);
    } finally {
      await listener.close();
    }
  });
}

test('a valid new certificate is served even if it expires sooner, and the port says so', async () => {
  const current = issued(-1, 48);
  const { listener, directory, lines } = await listen('shorter', current);
  try {
    const shorter = issued(-1, 2);
    const reloaded = once(listener.certificates, 'reloaded');
    writePair(directory, shorter);
    assert.deepEqual(await reloaded, [fingerprint(shorter)]);
    assert.equal(await servedFingerprint(listener.port), fingerprint(shorter));
    const info = lines.map((line) => JSON.parse(line)).find((line) => line.level === 'info');
    assert.equal(info?.message, 'serving a new certificate');
    assert.equal(info?.fingerprint, fingerprint(shorter));
  } finally {
    await listener.close();
  }
});
