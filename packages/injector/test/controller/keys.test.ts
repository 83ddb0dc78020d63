import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, importJWK, jwtVerify } from 'jose';
import {
  controllerKeyFromJwk,
  generateControllerJwk,
  loadControllerKey,
  maxTokenLifetimeSeconds,
} from '../../src/controller/keys.ts';

const policy = { name: 'default', hash: `sha256:${'a'.repeat(64)}` };

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'veil-keys-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('a push token names the controller, one pod, the policy it carries, and lives at most a minute', async () => {
  const key = await controllerKeyFromJwk(await generateControllerJwk());
  for (const lifetime of [undefined, 30, 3600]) {
    const token = await key.sign({ podUid: 'uid-1', subject: 'replica-a', policy }, lifetime);
    const { payload } = await jwtVerify(token, await importJWK(key.publicJwk, 'EdDSA'), {
      issuer: 'veil-controller',
      audience: 'veil-sidecar:uid-1',
      algorithms: ['EdDSA'],
      maxTokenAge: '5m',
      requiredClaims: ['exp', 'iat'],
    });
    assert.equal(payload.sub, 'replica-a');
    assert.deepEqual(payload.policy, policy);
    assert.ok((payload.exp ?? 0) - (payload.iat ?? 0) <= maxTokenLifetimeSeconds);
    assert.ok((payload.exp ?? 0) > Date.now() / 1000, 'still valid when sent');
    assert.equal(typeof payload.jti, 'string');
    assert.deepEqual(decodeProtectedHeader(token), { alg: 'EdDSA', kid: key.kid, typ: 'JWT' });
  }
  const a = decodeJwt(await key.sign({ podUid: 'uid-1', subject: 'x', policy }));
  const b = decodeJwt(await key.sign({ podUid: 'uid-1', subject: 'x', policy }));
  assert.notEqual(a.jti, b.jti);
});

test('a revocation token binds the name and the version revoked, and is a push token in all else', async () => {
  const key = await controllerKeyFromJwk(await generateControllerJwk());
  for (const lifetime of [undefined, 3600]) {
    const token = await key.sign(
      { podUid: 'uid-1', subject: 'replica-a', revoke: { name: 'default', hash: 'sha256:v1' } },
      lifetime,
    );
    const { payload } = await jwtVerify(token, await importJWK(key.publicJwk, 'EdDSA'), {
      issuer: 'veil-controller',
      audience: 'veil-sidecar:uid-1',
      algorithms: ['EdDSA'],
      maxTokenAge: '5m',
      requiredClaims: ['exp', 'iat', 'jti'],
    });
    assert.deepEqual(payload.revoke, { name: 'default', hash: 'sha256:v1' });
    assert.equal(payload.policy, undefined, 'it cannot push a version');
    assert.equal(payload.sub, 'replica-a');
    assert.ok((payload.exp ?? 0) - (payload.iat ?? 0) <= maxTokenLifetimeSeconds);
  }
  const a = decodeJwt(
    await key.sign({ podUid: 'uid-1', subject: 'x', revoke: { name: 'default', hash: 'sha256:v1' } }),
  );
  const b = decodeJwt(
    await key.sign({ podUid: 'uid-1', subject: 'x', revoke: { name: 'default', hash: 'sha256:v1' } }),
  );
  assert.notEqual(a.jti, b.jti);
  const push = decodeJwt(await key.sign({ podUid: 'uid-1', subject: 'x', policy }));
  assert.equal(push.revoke, undefined, 'a push token revokes nothing');
});

test('a token for one pod is refused by another', async () => {
  const key = await controllerKeyFromJwk(await generateControllerJwk());
  const token = await key.sign({ podUid: 'uid-1', subject: 'x', policy });
  await assert.rejects(
    jwtVerify(token, await importJWK(key.publicJwk, 'EdDSA'), { audience: 'veil-sidecar:uid-2' }),
    /aud/,
  );
});

test('the published key is the public half only', async () => {
  const key = await controllerKeyFromJwk(await generateControllerJwk());
  assert.deepEqual(Object.keys(key.publicJwk).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x']);
});

test('the key file must hold an Ed25519 private JWK; the error never shows key material', async () => {
  const file = join(dir, 'ok.json');
  const jwk = await generateControllerJwk();
  await writeFile(file, JSON.stringify(jwk));
  const loaded = await loadControllerKey(file);
  assert.equal(loaded.publicJwk.x, jwk.x);

  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  const ec = await exportJWK(privateKey);
  const wrong = join(dir, 'ec.json');
  await writeFile(wrong, JSON.stringify(ec));
  await assert.rejects(loadControllerKey(wrong), (error: Error) => {
    assert.match(error.message, /Ed25519 private JWK/);
    assert.ok(!error.message.includes(String(ec.d)));
    return true;
  });
  const { d: _d, ...publicOnly } = jwk;
  await assert.rejects(controllerKeyFromJwk(publicOnly), /bad: d/);
  await writeFile(join(dir, 'junk.json'), 'not json');
  await assert.rejects(loadControllerKey(join(dir, 'junk.json')), /not readable JSON/);
});
