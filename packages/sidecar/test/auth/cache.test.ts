// The verified-token cache: repeat callers skip signature verification, but
// never past the token's expiry or the cache's own time limit, and the cache
// stays bounded. A settable clock drives time.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { JWTPayload } from 'jose';
import { createAuthenticator, TOKEN_CACHE_TTL_MS } from '../../src/auth/authenticator.ts';
import type { AuthResult } from '../../src/auth/identity.ts';
import { startTestIssuer, type TestIssuer } from '../fixtures/issuer.ts';
import { AUDIENCE, bearer, oidcAuth } from './config.ts';

function reasonOf(result: AuthResult): string {
  return result.ok ? 'ok' : result.reason;
}

describe('verified-token cache', () => {
  let idp: TestIssuer;
  let clock: number;
  const now = () => clock;
  const t0 = Date.UTC(2030, 0, 1);

  const claims = (subject: string): JWTPayload => ({ iss: idp.issuer, sub: subject, aud: AUDIENCE });

  before(async () => {
    idp = await startTestIssuer();
  });

  after(async () => {
    await idp.stop();
  });

  it('verifies a repeated token once', async () => {
    clock = t0;
    const auth = createAuthenticator(oidcAuth(idp.issuer), { now });
    try {
      const header = bearer(await idp.mint(claims('alice'), { now: t0, lifetimeSeconds: 3600 }));
      for (let i = 0; i < 100; i += 1) assert.equal(reasonOf(await auth.authenticate(header)), 'ok');
      assert.deepEqual(auth.stats(), { verifications: 1, cacheHits: 99, cachedTokens: 1 });
    } finally {
      await auth.close();
    }
  });

  it('shares one verification among concurrent first requests', async () => {
    clock = t0;
    const auth = createAuthenticator(oidcAuth(idp.issuer), { now });
    try {
      const header = bearer(await idp.mint(claims('alice'), { now: t0 }));
      const results = await Promise.all(Array.from({ length: 20 }, () => auth.authenticate(header)));
      assert.deepEqual(new Set(results.map(reasonOf)), new Set(['ok']));
      assert.equal(auth.stats().verifications, 1);
    } finally {
      await auth.close();
    }
  });

  it('verifies again once the cache time limit has passed', async () => {
    clock = t0;
    const auth = createAuthenticator(oidcAuth(idp.issuer), { now });
    try {
      const header = bearer(await idp.mint(claims('alice'), { now: t0, lifetimeSeconds: 3600 }));
      assert.equal(reasonOf(await auth.authenticate(header)), 'ok');
      clock = t0 + TOKEN_CACHE_TTL_MS - 1;
      assert.equal(reasonOf(await auth.authenticate(header)), 'ok');
      assert.equal(auth.stats().verifications, 1);
      clock = t0 + TOKEN_CACHE_TTL_MS;
      assert.equal(reasonOf(await auth.authenticate(header)), 'ok');
      assert.equal(auth.stats().verifications, 2);
    } finally {
      await auth.close();
    }
  });

  it('refuses a cached token once it has expired', async () => {
    clock = t0;
    const auth = createAuthenticator(oidcAuth(idp.issuer, {}, 0), { now });
    try {
      const header = bearer(await idp.mint(claims('alice'), { now: t0, lifetimeSeconds: 30 }));
      assert.equal(reasonOf(await auth.authenticate(header)), 'ok');
      clock = t0 + 29_000;
      assert.equal(reasonOf(await auth.authenticate(header)), 'ok');
      assert.equal(auth.stats().cacheHits, 1);
      clock = t0 + 30_000;
      assert.equal(reasonOf(await auth.authenticate(header)), 'expired');
      assert.equal(auth.stats().cacheHits, 1);
    } finally {
      await auth.close();
    }
  });

  it('does not cache refusals', async () => {
    clock = t0;
    const auth = createAuthenticator(oidcAuth(idp.issuer), { now });
    try {
      const header = bearer(await idp.mint({ ...claims('alice'), aud: 'elsewhere' }, { now: t0 }));
      assert.equal(reasonOf(await auth.authenticate(header)), 'wrong_audience');
      assert.equal(reasonOf(await auth.authenticate(header)), 'wrong_audience');
      assert.deepEqual(auth.stats(), { verifications: 2, cacheHits: 0, cachedTokens: 0 });
    } finally {
      await auth.close();
    }
  });

  it('stays within its size bound, dropping the least recently used token', async () => {
    clock = t0;
    const auth = createAuthenticator(oidcAuth(idp.issuer), { now, tokenCacheMaxEntries: 2 });
    try {
      const [a, b, c] = await Promise.all(
        ['a', 'b', 'c'].map(async (s) => bearer(await idp.mint(claims(s), { now: t0 }))),
      );
      for (const header of [a, b, a, c]) assert.equal(reasonOf(await auth.authenticate(header)), 'ok');
      assert.deepEqual(auth.stats(), { verifications: 3, cacheHits: 1, cachedTokens: 2 });
      assert.equal(reasonOf(await auth.authenticate(a)), 'ok');
      assert.equal(reasonOf(await auth.authenticate(b)), 'ok');
      assert.deepEqual(auth.stats(), { verifications: 4, cacheHits: 2, cachedTokens: 2 });
    } finally {
      await auth.close();
    }
  });

  it('hands out identities nobody can change for the next caller', async () => {
    clock = t0;
    const auth = createAuthenticator(oidcAuth(idp.issuer), { now });
    try {
      const header = bearer(
        await idp.mint({ ...claims('alice'), 'https://veil.dev/groups': ['readers'] }, { now: t0 }),
      );
      const first = await auth.authenticate(header);
      assert.ok(first.ok);
      assert.throws(() => first.identity.groups.push('admins'), TypeError);
      const second = await auth.authenticate(header);
      assert.deepEqual(second.ok && second.identity.groups, ['readers']);
    } finally {
      await auth.close();
    }
  });
});
