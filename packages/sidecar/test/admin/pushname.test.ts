// A push names the policy it carries, and the sidecar enforces one policy, the
// one it was configured with: a push of any other is NACKed, whatever its token.
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { policyHash, policySpecSchema } from '@veil/core';
import Fastify, { type FastifyInstance } from 'fastify';
import { type CryptoKey, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { CONTROLLER_ISSUER, policyRoutes, sidecarAudience } from '../../src/admin/policy.ts';
import { PolicyStore } from '../../src/policy/store.ts';

const POD_UID = 'pod-push-name';
const spec = policySpecSchema.parse({});

describe('a push naming another policy', () => {
  let dir: string;
  let controller: CryptoKey;
  let store: PolicyStore;
  let app: FastifyInstance;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'veil-push-name-'));
    const pair = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    controller = pair.privateKey;
    const controllerKeyFile = join(dir, 'controller.jwk');
    await writeFile(
      controllerKeyFile,
      JSON.stringify({ ...(await exportJWK(pair.publicKey)), alg: 'EdDSA' }),
    );
    store = new PolicyStore({ hashKey: randomBytes(32) });
    app = Fastify({ logger: false });
    await app.register(policyRoutes, { store, podUid: POD_UID, policyName: 'team-a', controllerKeyFile });
  });

  after(async () => {
    await app.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** Pushes `name` with a token the controller signed for exactly that name and spec. */
  async function push(name: string) {
    const token = await new SignJWT({ jti: randomUUID(), policy: { name, hash: policyHash(spec) } })
      .setProtectedHeader({ alg: 'EdDSA' })
      .setIssuer(CONTROLLER_ISSUER)
      .setAudience(sidecarAudience(POD_UID))
      .setIssuedAt()
      .setExpirationTime('1m')
      .sign(controller);
    return app.inject({
      method: 'PUT',
      url: '/v1/policy',
      headers: { authorization: `Bearer ${token}` },
      payload: { name, spec },
    });
  }

  it('is NACKed with the reason, and nothing is applied', async () => {
    const answer = await push('team-b');
    assert.equal(answer.statusCode, 422);
    assert.deepEqual(answer.json(), {
      status: 'nack',
      reason: 'this sidecar enforces policy team-a, not team-b',
    });
    assert.equal(store.current(), undefined);
  });

  it('while the configured policy is ACKed', async () => {
    const answer = await push('team-a');
    assert.equal(answer.statusCode, 200, answer.body);
    assert.equal(store.current()?.name, 'team-a');
  });
});
