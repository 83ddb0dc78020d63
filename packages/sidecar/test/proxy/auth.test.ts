// The JWT attack matrix through the proxy: every forged, stale or misdirected
// token is answered 401 with a Bearer challenge, its reason code told to the
// caller and recorded as unauthenticated with no identity, and never echoed
// into the record or the answer.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { JWTPayload } from 'jose';
import type { AuthFailureCode } from '../../src/auth/identity.ts';
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
    fixture = await startSidecarFixture({
      extraIssuers: [unreachable],
      policy: {
        access: {
          rules: [
            { name: 'team', groups: [TEAM] },
            // Written for service accounts: no OIDC caller may match it.
            {
              name: 'ml-service-accounts',
              groups: ['system:serviceaccounts:ml'],
              subjects: ['system:serviceaccount:ml:trainer'],
            },
          ],
          allowRoutes: [{ method: 'GET', path: '/v1/models' }],
        },
      },
    });
    await unreachable.stop();
    now = Math.floor(Date.now() / 1000);
  });
  after(async () => {
    await fixture.close();
    await stranger.stop();
  });

  const attacks: { name: string; token: () => Promise<string | undefined>; reason: AuthFailureCode }[] = [
    { name: 'a missing token', token: async () => undefined, reason: 'missing_token' },
    {
      name: 'alg none',
      token: async () => unsignedToken(claims(), fixture.issuer.keyring.signingKid),
      reason: 'alg_not_allowed',
    },
    {
      name: 'HS256 signed with the public key',
      token: () =>
        hmacWithPublicKey(claims(), fixture.issuer.keyring.publicJwk(fixture.issuer.keyring.signingKid)),
      reason: 'alg_not_allowed',
    },
    {
      name: 'an expired token',
      token: () => fixture.token({ iat: now - 2 * hour, exp: now - hour }),
      reason: 'expired',
    },
    {
      name: 'a token not yet valid',
      token: () => fixture.token({ nbf: now + hour }),
      reason: 'not_yet_valid',
    },
    {
      name: 'a token issued in the future',
      token: () => fixture.token({ iat: now + hour }),
      reason: 'invalid_claims',
    },
    {
      name: 'a wrong issuer',
      token: () => stranger.mint(claims({ iss: stranger.issuer })),
      reason: 'unknown_issuer',
    },
    {
      name: 'a wrong audience',
      token: () => fixture.token({ aud: 'another-service' }),
      reason: 'wrong_audience',
    },
    {
      name: 'an unknown kid',
      token: () => foreignToken(claims(), { kid: 'never-published' }),
      reason: 'unknown_kid',
    },
    {
      name: 'a tampered payload',
      token: async () => tamperPayload(await fixture.token(), { sub: 'admin', groups: ['admins'] }),
      reason: 'bad_signature',
    },
    {
      name: 'an issuer whose JWKS is unreachable',
      token: () => unreachable.mint(claims({ iss: unreachable.issuer })),
      reason: 'jwks_unavailable',
    },
    {
      name: 'an Azure AD groups overage (hasgroups, no groups claim)',
      token: () => fixture.token({ groups: undefined, hasgroups: true }),
      reason: 'invalid_claims',
    },
    {
      name: 'an OIDC token in a service-account group a rule names',
      token: () => fixture.token({ groups: ['system:serviceaccounts:ml'] }),
      reason: 'invalid_claims',
    },
    {
      name: "an OIDC token with a service account's subject a rule names",
      token: () => fixture.token({ sub: 'system:serviceaccount:ml:trainer', groups: [] }),
      reason: 'invalid_claims',
    },
  ];

  for (const attack of attacks) {
    it(`answers ${attack.name} 401 (${attack.reason}) and records it`, async () => {
      const token = await attack.token();
      const before = fixture.sink.lines.length;
      const answer = await call(`${fixture.url}/v1/embeddings`, body, { token });
      assert.equal(answer.status, 401);
      const { error } = answer.json as { error: { type: string; message: string } };
      assert.equal(error.type, 'authentication_error');
      assert.ok(error.message.startsWith(`(${attack.reason}) `), error.message);
      assert.equal(
        answer.headers['www-authenticate'],
        token === undefined ? 'Bearer' : 'Bearer error="invalid_token"',
      );
      assert.equal(fixture.sink.lines.length, before + 1, 'exactly one record');
      const record = fixture.records().at(-1);
      assert.equal(record?.outcome, 'unauthenticated');
      assert.equal(record?.status, 401);
      assert.equal(record?.identity, null);
      assert.ok(record?.error?.startsWith(`(${attack.reason}) `), record?.error);
      if (token !== undefined) {
        for (const part of token.split('.').filter((p) => p.length > 8)) {
          assert.ok(!fixture.sink.lines.at(-1)?.includes(part), 'the record never holds the token');
          assert.ok(!answer.text.includes(part), 'the answer never echoes the token');
        }
      }
    });
  }

  it('names the reserved prefix, never the name the token asserted', async () => {
    const token = await fixture.token({ groups: [TEAM, 'system:serviceaccounts:ml'] });
    const answer = await call(`${fixture.url}/v1/embeddings`, body, { token });
    assert.equal(answer.status, 401);
    assert.match(answer.text, /prefix \\"system:\\", reserved for Kubernetes service accounts/);
    assert.ok(!answer.text.includes('serviceaccounts:ml'), answer.text);
    assert.ok(!fixture.records().at(-1)?.error?.includes('serviceaccounts:ml'));
  });

  it('challenges a caller with no bearer token without an error code, as RFC 6750 asks', async () => {
    const answer = await call(`${fixture.url}/v1/embeddings`, body, {
      headers: { authorization: 'Basic YWxpY2U6c2VjcmV0' },
    });
    assert.equal(answer.status, 401);
    assert.equal(answer.headers['www-authenticate'], 'Bearer');
    assert.ok(fixture.records().at(-1)?.error?.startsWith('(malformed_token) '));
  });

  it('challenges in every dialect, and on allow-listed routes', async () => {
    const routes: [string, unknown][] = [
      ['/embed', { inputs: ['hello'] }],
      ['/api/embed', { model: 'm', input: ['hello'] }],
      ['/api/embeddings', { model: 'm', prompt: 'hello' }],
      ['/v2/embed', { model: 'm', texts: ['hello'], input_type: 'search_document' }],
      ['/v1/embed', { model: 'm', texts: ['hello'] }],
      ['/v1/models', undefined],
    ];
    for (const [route, sent] of routes) {
      const missing = await call(`${fixture.url}${route}`, sent);
      assert.deepEqual([route, missing.status, missing.headers['www-authenticate']], [route, 401, 'Bearer']);
      const refused = await call(`${fixture.url}${route}`, sent, { token: 'not-a-jwt' });
      assert.deepEqual(
        [route, refused.status, refused.headers['www-authenticate']],
        [route, 401, 'Bearer error="invalid_token"'],
      );
      assert.match(refused.text, /\(malformed_token\) /);
    }
  });

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

  it('never calls the model for any of them', async () => {
    // Sends them all again, so that this holds when it runs alone too.
    const recordsBefore = fixture.records().length;
    for (const attack of attacks) {
      const answer = await call(`${fixture.url}/v1/embeddings`, body, { token: await attack.token() });
      assert.equal(answer.status, 401, attack.name);
    }
    assert.deepEqual(
      fixture
        .records()
        .slice(recordsBefore)
        .map((record) => record.outcome),
      attacks.map(() => 'unauthenticated'),
    );
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
