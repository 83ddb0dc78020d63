// `DELETE /v1/policy`: the controller revoking a deleted policy. A valid
// revocation of the policy this sidecar enforces leaves nothing in force (every
// request 503, not ready) and nothing saved to come back at a restart; its
// token is checked, bound and spent as a push's is.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type PolicySpec, policyHash } from '@veil/core';
import { type CryptoKey, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { CONTROLLER_ISSUER, sidecarAudience, spentTokensFile } from '../../src/admin/policy.ts';
import { tempPathOf } from '../../src/files.ts';
import { controllerToken } from '../fixtures/controllertoken.ts';
import { call, type SidecarFixture, startSidecarFixture, testPolicy } from '../fixtures/sidecar.ts';

const revokeToken = (key: CryptoKey, name: string, hash: string) =>
  controllerToken(key, { revoke: { name, hash } });

describe('a revocation', () => {
  let fixture: SidecarFixture;
  let controller: CryptoKey;
  let policy: PolicySpec;

  const tls = () => {
    const admin = fixture.adminTls;
    if (admin === undefined) throw new Error('the fixture has no admin certificate');
    return admin;
  };
  const revoke = (token: string) =>
    call(`${tls().url}/v1/policy`, undefined, { method: 'DELETE', token, dispatcher: tls().dispatcher });
  const push = async (spec: PolicySpec) =>
    call(
      `${tls().url}/v1/policy`,
      { name: 'test', spec },
      {
        method: 'PUT',
        token: await controllerToken(controller, { policy: { name: 'test', hash: policyHash(spec) } }),
        dispatcher: tls().dispatcher,
      },
    );
  const embed = async () =>
    call(`${fixture.url}/v1/embeddings`, { model: 'm', input: 'x' }, { token: await fixture.token() });
  const savedFile = () => join(fixture.stateDir, 'policy', 'last-good-policy.json');

  before(async () => {
    const pair = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
    controller = pair.privateKey;
    fixture = await startSidecarFixture({
      controllerKey: { ...(await exportJWK(pair.privateKey)), alg: 'EdDSA' },
      config: { policyName: 'test' },
    });
    policy = testPolicy([fixture.issuer]);
  });
  after(() => fixture.close());

  it('of the policy enforced drops it: every request 503, not ready, and its saved copy gone', async () => {
    assert.equal((await push(policy)).status, 200);
    assert.equal((await embed()).status, 200);
    assert.ok(JSON.parse(await readFile(savedFile(), 'utf8')).spec, 'saved before');

    const answer = await revoke(await revokeToken(controller, 'test', policyHash(policy)));
    assert.equal(answer.status, 200, answer.text);
    assert.deepEqual(answer.json, { status: 'ack', revoked: 'test' });
    assert.equal(fixture.sidecar.store.current(), undefined);
    assert.equal((await embed()).status, 503);
    const ready = await call(`${fixture.adminUrl}/readyz`);
    assert.equal(ready.status, 503);
    assert.deepEqual(ready.json, { status: 'not ready', reason: 'no valid policy' });
    assert.equal((await call(`${fixture.adminUrl}/v1/policy`)).status, 404, 'the controller reads none');
    assert.deepEqual(JSON.parse(await readFile(savedFile(), 'utf8')), { name: 'test', revoked: true });

    // Re-created: the next push restores service.
    assert.equal((await push(policy)).status, 200);
    assert.equal((await embed()).status, 200);
  });

  it('of another policy is NACKed like a push of one, and nothing is dropped', async () => {
    const before = fixture.sidecar.store.current();
    assert.ok(before);
    const answer = await revoke(await revokeToken(controller, 'other', policyHash(policy)));
    assert.equal(answer.status, 422);
    assert.deepEqual(answer.json, { status: 'nack', reason: 'this sidecar enforces policy test, not other' });
    assert.equal(fixture.sidecar.store.current(), before);
    assert.equal((await embed()).status, 200);
  });

  it('of a version older than the one enforced is NACKed: a late revocation drops no newer push', async () => {
    const newer: PolicySpec = { ...policy, limits: { ...policy.limits, maxInputsPerRequest: 7 } };
    assert.equal((await push(newer)).status, 200);
    const late = await revoke(await revokeToken(controller, 'test', policyHash(policy)));
    assert.equal(late.status, 422);
    assert.deepEqual(late.json, {
      status: 'nack',
      reason: `this sidecar enforces ${policyHash(newer)}, not the ${policyHash(policy)} revoked`,
    });
    assert.equal(fixture.sidecar.store.current()?.hash, policyHash(newer));
    assert.equal((await push(policy)).status, 200);
  });

  it('with a token already used is refused: a captured revocation cannot cut a re-created policy off', async () => {
    const token = await revokeToken(controller, 'test', policyHash(policy));
    assert.equal((await revoke(token)).status, 200);
    assert.equal((await push(policy)).status, 200);
    const replayed = await revoke(token);
    assert.equal(replayed.status, 401);
    assert.deepEqual(replayed.json, { status: 'nack', reason: 'push token already used' });
    assert.equal(replayed.headers['www-authenticate'], 'Bearer error="invalid_token"');
    assert.equal(fixture.sidecar.store.current()?.hash, policyHash(policy));
  });

  it('applies though its token cannot be put on record, where a push is refused', async () => {
    assert.ok(fixture.sidecar.store.current());
    // A directory where the record of spent tokens is written first: every save fails.
    const blocked = tempPathOf(join(fixture.stateDir, 'policy', spentTokensFile));
    await mkdir(blocked);
    try {
      const answer = await revoke(await revokeToken(controller, 'test', policyHash(policy)));
      assert.equal(answer.status, 200, answer.text);
      assert.equal(fixture.sidecar.store.current(), undefined, 'the deleted policy serves no more');
      const refused = await push(policy);
      assert.equal(refused.status, 503);
      assert.deepEqual(refused.json, { status: 'nack', reason: 'the push token cannot be recorded; retry' });
      assert.equal(fixture.sidecar.store.current(), undefined);
    } finally {
      await rm(blocked, { recursive: true });
    }
    assert.equal((await push(policy)).status, 200);
  });

  it('over plain HTTP is refused, spending nothing; the same one over TLS is taken', async () => {
    const token = await revokeToken(controller, 'test', policyHash(policy));
    const plain = await call(`${fixture.adminUrl}/v1/policy`, undefined, { method: 'DELETE', token });
    assert.equal(plain.status, 403);
    assert.deepEqual(plain.json, { status: 'nack', reason: 'pushes must use HTTPS' });
    assert.ok(fixture.sidecar.store.current());
    assert.equal((await revoke(token)).status, 200);
    assert.equal(fixture.sidecar.store.current(), undefined);
    assert.equal((await push(policy)).status, 200);
  });

  it('needs a revocation token: a push token does not revoke, nor one of another key or pod', async () => {
    const before = fixture.sidecar.store.current();
    assert.ok(before);
    const pushToken = await controllerToken(controller, {
      policy: { name: 'test', hash: policyHash(policy) },
    });
    const asPush = await revoke(pushToken);
    assert.equal(asPush.status, 401);
    assert.deepEqual(asPush.json, {
      status: 'nack',
      reason: 'the revocation token must carry a jti and the policy it revokes',
    });
    const impostor = (await generateKeyPair('EdDSA', { crv: 'Ed25519' })).privateKey;
    assert.equal((await revoke(await revokeToken(impostor, 'test', policyHash(policy)))).status, 401);
    const otherPod = await new SignJWT({
      jti: randomUUID(),
      revoke: { name: 'test', hash: policyHash(policy) },
    })
      .setProtectedHeader({ alg: 'EdDSA' })
      .setIssuer(CONTROLLER_ISSUER)
      .setAudience(sidecarAudience('another-pod'))
      .setIssuedAt()
      .setExpirationTime('1m')
      .sign(controller);
    assert.equal((await revoke(otherPod)).status, 401);
    assert.equal(fixture.sidecar.store.current(), before);

    // Nor does a revocation token push.
    const pushed = await call(
      `${tls().url}/v1/policy`,
      { name: 'test', spec: policy },
      {
        method: 'PUT',
        token: await revokeToken(controller, 'test', policyHash(policy)),
        dispatcher: tls().dispatcher,
      },
    );
    assert.equal(pushed.status, 401);
    assert.deepEqual(pushed.json, {
      status: 'nack',
      reason: 'the push token must carry a jti and the policy it authorises',
    });
  });
});
