// A push names the policy it carries, and the sidecar enforces one policy, the
// one it was configured with: a push of any other is NACKed, whatever its token.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { policyHash, policySpecSchema } from '@veil/core';
import { type CryptoKey, exportJWK, generateKeyPair } from 'jose';
import { controllerToken } from '../fixtures/controllertoken.ts';
import { call, type SidecarFixture, startSidecarFixture } from '../fixtures/sidecar.ts';

const spec = policySpecSchema.parse({});

describe('a push naming another policy', () => {
  let controller: CryptoKey;
  let fixture: SidecarFixture;

  before(async () => {
    const pair = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
    controller = pair.privateKey;
    fixture = await startSidecarFixture({
      controllerKey: { ...(await exportJWK(pair.privateKey)), alg: 'EdDSA' },
      config: { policyName: 'team-a' },
      noPolicy: true,
    });
  });

  after(() => fixture.close());

  /** Pushes `name` with a token the controller signed for exactly that name and spec. */
  async function push(name: string) {
    const token = await controllerToken(controller, { policy: { name, hash: policyHash(spec) } });
    const tls = fixture.adminTls;
    assert.ok(tls);
    return call(`${tls.url}/v1/policy`, { name, spec }, { method: 'PUT', token, dispatcher: tls.dispatcher });
  }

  it('is NACKed with the reason, and nothing is applied', async () => {
    const answer = await push('team-b');
    assert.equal(answer.status, 422);
    assert.deepEqual(answer.json, {
      status: 'nack',
      reason: 'this sidecar enforces policy team-a, not team-b',
    });
    assert.equal(fixture.sidecar.store.current(), undefined);
  });

  it('while the configured policy is ACKed', async () => {
    const answer = await push('team-a');
    assert.equal(answer.status, 200, answer.text);
    assert.equal(fixture.sidecar.store.current()?.name, 'team-a');
  });
});
