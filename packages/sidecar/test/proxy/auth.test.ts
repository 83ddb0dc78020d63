// The JWT attack matrix through the proxy: every forged, stale or misdirected
// token is answered 401, recorded as unauthenticated with no identity, and
// never echoed into the record or the answer.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { JWTPayload } from 'jose';
import {
  foreignToken,
  hmacWithPublicKey,
  startTestIssuer,
  type TestIssuer,
  tamperPayload,
  unsignedToken,
} from '../fixtures/issuer.ts';
import { AUDIENCE, call, type SidecarFixture, startSidecarFixture, TEAM } from '../fixtures/sidecar.ts';

const hour = 3600;
const body = { model: 'veil-demo-embed', input: 'hello' };

describe('JWT attacks through the proxy', () => {
  let fixture: SidecarFixture;
  let stranger: TestIssuer;
  /** Trusted by the policy, but off the network: its keys cannot be fetched. */
  let unreachable: TestIssuer;
  let now: number;

  const claims = (extra: JWTPayload = {}): JWTPayload => ({
    iss: fixture.issuer.issuer,
    sub: 'alice',
    aud: AUDIENCE,
    groups: [TEAM],
    iat: now,
    exp: now + hour,
    ...extra,
  });

  before(async () => {
    stranger = await startTestIssuer();
    unreachable = await startTestIssuer();
    fixture = await startSidecarFixture({ extraIssuers: [unreachable] });
    await unreachable.stop();
    now = Math.floor(Date.now() / 1000);
  });
  after(async () => {
    await fixture.close();
    await stranger.stop();
  });

  const attacks: { name: string; token: () => Promise<string | undefined> }[] = [
    { name: 'a missing token', token: async () => undefined },
    {
      name: 'alg none',
      token: async () => unsignedToken(claims(), fixture.issuer.keyring.signingKid),
    },
    {
      name: 'HS256 signed with the public key',
      token: () =>
        hmacWithPublicKey(claims(), fixture.issuer.keyring.publicJwk(fixture.issuer.keyring.signingKid)),
    },
    { name: 'an expired token', token: () => fixture.token({ iat: now - 2 * hour, exp: now - hour }) },
    { name: 'a token not yet valid', token: () => fixture.token({ nbf: now + hour }) },
    { name: 'a token issued in the future', token: () => fixture.token({ iat: now + hour }) },
    { name: 'a wrong issuer', token: () => stranger.mint(claims({ iss: stranger.issuer })) },
    { name: 'a wrong audience', token: () => fixture.token({ aud: 'another-service' }) },
    { name: 'an unknown kid', token: () => foreignToken(claims(), { kid: 'never-published' }) },
    {
      name: 'a tampered payload',
      token: async () => tamperPayload(await fixture.token(), { sub: 'admin', groups: ['admins'] }),
    },
    {
      name: 'an issuer whose JWKS is unreachable',
      token: () => unreachable.mint(claims({ iss: unreachable.issuer })),
    },
  ];

  for (const attack of attacks) {
    it(`answers ${attack.name} 401 and records it`, async () => {
      const token = await attack.token();
      const before = fixture.sink.lines.length;
      const answer = await call(`${fixture.url}/v1/embeddings`, body, { token });
      assert.equal(answer.status, 401);
      assert.equal((answer.json as { error: { type: string } }).error.type, 'authentication_error');
      assert.equal(fixture.sink.lines.length, before + 1, 'exactly one record');
      const record = fixture.records().at(-1);
      assert.equal(record?.outcome, 'unauthenticated');
      assert.equal(record?.status, 401);
      assert.equal(record?.identity, null);
      assert.ok(record?.error, 'the record says why');
      if (token !== undefined) {
        for (const part of token.split('.').filter((p) => p.length > 8)) {
          assert.ok(!fixture.sink.lines.at(-1)?.includes(part), 'the record never holds the token');
          assert.ok(!answer.text.includes(part), 'the answer never echoes the token');
        }
      }
    });
  }

  it("tells the caller the issuer's keys are unavailable, and only the record where it looked", async () => {
    const token = await unreachable.mint(claims({ iss: unreachable.issuer }));
    const answer = await call(`${fixture.url}/v1/embeddings`, body, { token });
    assert.equal(answer.status, 401);
    const { host } = new URL(unreachable.issuer);
    assert.match(answer.text, /the issuer's keys are unavailable/);
    assert.ok(!answer.text.includes(host), answer.text);
    assert.ok(!/ECONNREFUSED/.test(answer.text), answer.text);
    assert.ok(fixture.records().at(-1)?.error?.includes(host), 'the record names where it looked');
  });

  it('never calls the model for any of them', () => {
    assert.equal(fixture.upstreamCalls.length, 0);
  });

  it('lets the genuine token through, with its identity recorded', async () => {
    const answer = await call(`${fixture.url}/v1/embeddings`, body, { token: await fixture.token() });
    assert.equal(answer.status, 200);
    assert.deepEqual(fixture.records().at(-1)?.identity, {
      issuer: fixture.issuer.issuer,
      subject: 'alice',
      groups: [TEAM],
    });
  });
});
