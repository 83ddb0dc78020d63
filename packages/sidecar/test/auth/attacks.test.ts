// The JWT attack matrix against a real local issuer: every forged, stale or
// misdirected token is refused with its own reason code.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { JWTPayload } from 'jose';
import { type Authenticator, createAuthenticator } from '../../src/auth/authenticator.ts';
import { type AuthFailureCode, authFailure } from '../../src/auth/identity.ts';
import { toAuthError } from '../../src/auth/jwt.ts';
import {
  foreignToken,
  hmacWithPublicKey,
  startTestIssuer,
  type TestIssuer,
  tamperPayload,
  unsignedToken,
} from '../fixtures/issuer.ts';
import { AUDIENCE, bearer, GROUPS_CLAIM, oidcAuth } from './config.ts';

const hour = 3600;

describe('JWT attack matrix', () => {
  let idp: TestIssuer;
  let stranger: TestIssuer;
  let auth: Authenticator;
  let nowSeconds: number;

  const claims = (extra: JWTPayload = {}): JWTPayload => ({
    iss: idp.issuer,
    sub: 'alice',
    aud: AUDIENCE,
    iat: nowSeconds,
    exp: nowSeconds + hour,
    [GROUPS_CLAIM]: ['ml-team'],
    ...extra,
  });

  before(async () => {
    idp = await startTestIssuer();
    stranger = await startTestIssuer();
    // A published RS256 key the policy does not allow (it allows ES256 only).
    await idp.keyring.addKey({ algorithm: 'RS256', kid: 'rsa-key' });
    auth = createAuthenticator(oidcAuth(idp.issuer, { algorithms: ['ES256'] }));
    nowSeconds = Math.floor(Date.now() / 1000);
  });

  after(async () => {
    await auth.close();
    await idp.stop();
    await stranger.stop();
  });

  const cases: { name: string; header: () => Promise<string | undefined>; reason: AuthFailureCode }[] = [
    { name: 'no Authorization header', header: async () => undefined, reason: 'missing_token' },
    { name: 'empty bearer credential', header: async () => 'Bearer ', reason: 'missing_token' },
    { name: 'Basic credentials', header: async () => 'Basic YWxpY2U6c2VjcmV0', reason: 'malformed_token' },
    { name: 'bearer that is not a JWT', header: async () => 'Bearer not-a-jwt', reason: 'malformed_token' },
    {
      name: 'JWE (five segments)',
      header: async () => 'Bearer eyJhbGciOiJkaXIifQ..aXY.Y2lwaGVy.dGFn',
      reason: 'malformed_token',
    },
    {
      name: 'header segment that is not JSON',
      header: async () => {
        const [, payload, signature] = (await idp.mint(claims())).split('.');
        return bearer(`bm90LWpzb24.${payload}.${signature}`);
      },
      reason: 'malformed_token',
    },
    {
      name: 'alg none',
      header: async () => bearer(unsignedToken(claims(), idp.keyring.signingKid)),
      reason: 'alg_not_allowed',
    },
    {
      name: 'HS256 keyed with the public key bytes',
      header: async () =>
        bearer(await hmacWithPublicKey(claims(), idp.keyring.publicJwk(idp.keyring.signingKid))),
      reason: 'alg_not_allowed',
    },
    {
      name: 'a published key of an algorithm the policy does not allow',
      header: async () => bearer(await idp.mint(claims(), { kid: 'rsa-key' })),
      reason: 'alg_not_allowed',
    },
    {
      name: 'expired',
      header: async () =>
        bearer(await idp.mint(claims({ iat: nowSeconds - 2 * hour, exp: nowSeconds - hour }))),
      reason: 'expired',
    },
    {
      name: 'not yet valid',
      header: async () => bearer(await idp.mint(claims({ nbf: nowSeconds + hour }))),
      reason: 'not_yet_valid',
    },
    {
      name: 'issued in the future',
      header: async () => bearer(await idp.mint(claims({ iat: nowSeconds + hour }))),
      reason: 'invalid_claims',
    },
    {
      name: 'issued by an issuer the policy does not name',
      header: async () => bearer(await stranger.mint(claims({ iss: stranger.issuer }))),
      reason: 'unknown_issuer',
    },
    {
      name: 'no issuer',
      header: async () => bearer(await idp.mint(claims({ iss: undefined }))),
      reason: 'unknown_issuer',
    },
    {
      name: 'claims the trusted issuer and its kid, signed with another key',
      header: async () => bearer(await foreignToken(claims(), { kid: idp.keyring.signingKid })),
      reason: 'bad_signature',
    },
    {
      name: 'wrong audience',
      header: async () => bearer(await idp.mint(claims({ aud: 'another-service' }))),
      reason: 'wrong_audience',
    },
    {
      name: 'no audience',
      header: async () => bearer(await idp.mint(claims({ aud: undefined }))),
      reason: 'wrong_audience',
    },
    {
      name: 'unknown kid',
      header: async () => bearer(await foreignToken(claims(), { kid: 'not-published' })),
      reason: 'unknown_kid',
    },
    {
      name: 'tampered payload',
      header: async () =>
        bearer(tamperPayload(await idp.mint(claims()), { sub: 'admin', [GROUPS_CLAIM]: ['admins'] })),
      reason: 'bad_signature',
    },
    {
      name: 'no subject',
      header: async () => bearer(await idp.mint(claims({ sub: undefined }))),
      reason: 'invalid_claims',
    },
    {
      name: 'no expiry',
      header: async () => bearer(await idp.mint(claims({ exp: undefined }))),
      reason: 'invalid_claims',
    },
    {
      name: 'groups claim of the wrong shape',
      header: async () => bearer(await idp.mint(claims({ [GROUPS_CLAIM]: { admins: true } }))),
      reason: 'invalid_claims',
    },
    {
      name: 'groups left out under Azure AD overage (hasgroups)',
      header: async () => bearer(await idp.mint(claims({ [GROUPS_CLAIM]: undefined, hasgroups: true }))),
      reason: 'invalid_claims',
    },
    {
      name: "a service account's group from an OIDC issuer",
      header: async () =>
        bearer(await idp.mint(claims({ [GROUPS_CLAIM]: ['ml-team', 'system:serviceaccounts:ml'] }))),
      reason: 'invalid_claims',
    },
    {
      name: "a service account's subject from an OIDC issuer",
      header: async () => bearer(await idp.mint(claims({ sub: 'system:serviceaccount:ml:trainer' }))),
      reason: 'invalid_claims',
    },
    {
      name: 'a single group string with a reserved name',
      header: async () => bearer(await idp.mint(claims({ [GROUPS_CLAIM]: 'system:masters' }))),
      reason: 'invalid_claims',
    },
  ];

  for (const attack of cases) {
    it(`refuses ${attack.name} with ${attack.reason}`, async () => {
      const header = await attack.header();
      const result = await auth.authenticate(header);
      assert.equal(result.ok, false);
      assert.equal(result.ok ? undefined : result.reason, attack.reason);
      const token = header?.split(' ')[1];
      if (token)
        assert.ok(!(result.ok ? '' : result.message).includes(token), 'the message never echoes the token');
    });
  }

  it('accepts a good token, with groups from the configured claim', async () => {
    const token = await idp.mint(claims({ [GROUPS_CLAIM]: ['ml-team', 'readers'] }));
    const result = await auth.authenticate(bearer(token));
    assert.deepEqual(result, {
      ok: true,
      identity: {
        issuer: idp.issuer,
        subject: 'alice',
        groups: ['ml-team', 'readers'],
        kind: 'oidc',
      },
    });
  });

  it('takes a groups claim of one string as one group', async () => {
    const token = await idp.mint(claims({ sub: 'bob', [GROUPS_CLAIM]: 'solo-group' }));
    const result = await auth.authenticate(bearer(token));
    assert.ok(result.ok);
    assert.deepEqual(result.identity.groups, ['solo-group']);
  });

  it('accepts a token without iat, a claim issuers need not send', async () => {
    const result = await auth.authenticate(bearer(await idp.mint(claims({ sub: 'frank', iat: undefined }))));
    assert.ok(result.ok);
  });

  it('gives an empty group list when the groups claim is absent', async () => {
    const result = await auth.authenticate(
      bearer(await idp.mint(claims({ sub: 'carol', [GROUPS_CLAIM]: undefined }))),
    );
    assert.ok(result.ok);
    assert.deepEqual(result.identity.groups, []);
  });

  it('refuses a token whose groups are only referenced (Azure AD groups overage)', async () => {
    const overage = claims({
      sub: 'dave',
      [GROUPS_CLAIM]: undefined,
      _claim_names: { [GROUPS_CLAIM]: 'src1' },
      _claim_sources: { src1: { endpoint: 'https://graph.example.com/v1.0/users/dave/getMemberObjects' } },
    });
    const result = await auth.authenticate(bearer(await idp.mint(overage)));
    assert.equal(result.ok ? 'ok' : result.reason, 'invalid_claims');
    assert.match(result.ok ? '' : result.message, /only available by reference/);
    // A reference to another claim leaves the groups claim as it is.
    const otherClaim = claims({ sub: 'erin', _claim_names: { roles: 'src1' } });
    assert.ok((await auth.authenticate(bearer(await idp.mint(otherClaim)))).ok);
  });

  it('refuses hasgroups without the groups claim, and reads the groups when they came anyway', async () => {
    const overage = claims({ sub: 'contractor', [GROUPS_CLAIM]: undefined, hasgroups: true });
    const refused = await auth.authenticate(bearer(await idp.mint(overage)));
    assert.equal(refused.ok ? 'ok' : refused.reason, 'invalid_claims');
    assert.match(refused.ok ? '' : refused.message, /hasgroups/);
    const both = claims({ sub: 'contractor', [GROUPS_CLAIM]: ['contractors'], hasgroups: true });
    const read = await auth.authenticate(bearer(await idp.mint(both)));
    assert.deepEqual(read.ok && read.identity.groups, ['contractors']);
    const none = claims({ sub: 'contractor', [GROUPS_CLAIM]: undefined, hasgroups: false });
    assert.ok((await auth.authenticate(bearer(await idp.mint(none)))).ok);
  });

  it('names the reserved prefix, never the subject or group the token asserted', async () => {
    const subject = await auth.authenticate(
      bearer(await idp.mint(claims({ sub: 'system:serviceaccount:ml:trainer' }))),
    );
    assert.equal(
      subject.ok ? '' : subject.message,
      '"sub" uses the prefix "system:", reserved for Kubernetes service accounts',
    );
    const group = await auth.authenticate(
      bearer(await idp.mint(claims({ [GROUPS_CLAIM]: ['system:serviceaccounts:ml'] }))),
    );
    assert.equal(
      group.ok ? '' : group.message,
      `the "${GROUPS_CLAIM}" claim names a group with the prefix "system:", reserved for Kubernetes service accounts`,
    );
    // Only the prefix is reserved: a name merely holding it is anyone's.
    const lookalike = claims({ sub: 'ops-system:x', [GROUPS_CLAIM]: ['team-system:serviceaccounts'] });
    assert.ok((await auth.authenticate(bearer(await idp.mint(lookalike)))).ok);
  });

  it('refuses forbidden algorithms before reading any key', async () => {
    const fresh = await startTestIssuer();
    const strict = createAuthenticator(oidcAuth(fresh.issuer));
    try {
      const token = unsignedToken({ ...claims(), iss: fresh.issuer });
      const hmac = await hmacWithPublicKey(
        { ...claims(), iss: fresh.issuer },
        fresh.keyring.publicJwk(fresh.keyring.signingKid),
      );
      assert.equal((await strict.authenticate(bearer(token))).ok, false);
      assert.equal((await strict.authenticate(bearer(hmac))).ok, false);
      assert.deepEqual([fresh.requests.discovery, fresh.requests.jwks], [0, 0]);
    } finally {
      await strict.close();
      await fresh.stop();
    }
  });

  it('keeps the cause of a failure nobody classified for the record, and tells the caller only that it failed', () => {
    const { reason, message } = toAuthError(new RangeError('modulus out of range'));
    const failure = authFailure(reason, message);
    assert.equal(failure.reason, 'verification_failed');
    assert.equal(failure.detail, 'token could not be verified: RangeError: modulus out of range');
    assert.equal(failure.message, 'the token could not be verified');
  });

  it('tolerates clock skew up to clockSkewSeconds and no further', async () => {
    const token = await idp.mint(claims({ sub: 'dave', exp: nowSeconds - 10 }));
    const early = await idp.mint(claims({ sub: 'erin', iat: nowSeconds + 10 }));
    const lenient = createAuthenticator(oidcAuth(idp.issuer, {}, 30));
    const exact = createAuthenticator(oidcAuth(idp.issuer, {}, 0));
    try {
      assert.equal((await lenient.authenticate(bearer(token))).ok, true);
      const refused = await exact.authenticate(bearer(token));
      assert.equal(refused.ok ? undefined : refused.reason, 'expired');
      assert.equal((await lenient.authenticate(bearer(early))).ok, true);
      const issuedLater = await exact.authenticate(bearer(early));
      assert.equal(issuedLater.ok ? undefined : issuedLater.reason, 'invalid_claims');
    } finally {
      await lenient.close();
      await exact.close();
    }
  });
});
