// Where keys come from and how often we ask: discovery, rotation, refresh on
// unknown kid, rate limiting against kid spraying, outages, a moved key set,
// custom CAs.
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { type CryptoKey, exportJWK, generateKeyPair, type JWK, type JWTPayload, SignJWT } from 'jose';
import { Agent, type Dispatcher } from 'undici';
import { createAuthenticator } from '../../src/auth/authenticator.ts';
import type { AuthResult } from '../../src/auth/identity.ts';
import { JWKS_MAX_AGE_MS } from '../../src/auth/jwks.ts';
import { foreignToken, startTestIssuer, type TestIssuer } from '../fixtures/issuer.ts';
import { AUDIENCE, bearer, oidcAuth } from './config.ts';

function reasonOf(result: AuthResult): string {
  return result.ok ? 'ok' : result.reason;
}

function claimsFor(idp: { issuer: string }, subject = 'alice'): JWTPayload {
  return { iss: idp.issuer, sub: subject, aud: AUDIENCE };
}

async function randomKidTokens(idp: { issuer: string }, count: number): Promise<string[]> {
  return Promise.all(
    Array.from({ length: count }, (_, i) =>
      foreignToken(claimsFor(idp, `sprayer-${i}`), { kid: crypto.randomUUID() }),
    ),
  );
}

/** An issuer that moves its key set to a new URL (with a new key), as an IdP may. */
async function startMovingIssuer() {
  const keySets = new Map<string, { keys: JWK[] }>();
  const signers: { kid: string; key: CryptoKey }[] = [];
  const requests = { discovery: 0, jwks: 0 };
  let jwksPath = '';
  let issuer = '';
  const server = createServer((request, response) => {
    if (request.url === '/.well-known/openid-configuration') {
      requests.discovery += 1;
      response.setHeader('content-type', 'application/json');
      response.end(JSON.stringify({ issuer, jwks_uri: `${issuer}${jwksPath}` }));
      return;
    }
    const keySet = keySets.get(request.url ?? '');
    if (keySet) requests.jwks += 1;
    response.statusCode = keySet ? 200 : 404;
    response.setHeader('content-type', 'application/json');
    response.end(JSON.stringify(keySet ?? {}));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const moving = {
    issuer,
    requests,
    /** The key set now lives at `path` and holds only a new key; `keepOld` leaves the old URL answering. */
    async moveTo(path: string, keepOld: boolean) {
      const { privateKey, publicKey } = await generateKeyPair('ES256');
      const kid = `key-${signers.length}`;
      if (!keepOld) keySets.delete(jwksPath);
      keySets.set(path, { keys: [{ ...(await exportJWK(publicKey)), kid, alg: 'ES256' }] });
      signers.push({ kid, key: privateKey });
      jwksPath = path;
    },
    /** A token signed with the newest key. */
    mint(subject: string): Promise<string> {
      const signer = signers.at(-1);
      if (!signer) throw new Error('no key yet');
      return new SignJWT({})
        .setProtectedHeader({ alg: 'ES256', kid: signer.kid })
        .setIssuer(issuer)
        .setSubject(subject)
        .setAudience(AUDIENCE)
        .setExpirationTime('5m')
        .sign(signer.key);
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
  await moving.moveTo('/keys/1', false);
  return moving;
}

/** An issuer URL whose key set is whatever `keySet` says, as a broken or unusual IdP may publish. */
async function startKeySetServer(keySet: unknown) {
  const requests = { jwks: 0 };
  const server = createServer((_request, response) => {
    requests.jwks += 1;
    response.setHeader('content-type', 'application/json');
    response.end(JSON.stringify(keySet));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    issuer,
    jwksUri: `${issuer}/jwks`,
    requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe('key sets', () => {
  let idp: TestIssuer;

  before(async () => {
    idp = await startTestIssuer();
  });

  after(async () => {
    await idp.stop();
  });

  it('reads discovery once and the key set once for many tokens', async () => {
    const start = { ...idp.requests };
    const auth = createAuthenticator(oidcAuth(idp.issuer));
    try {
      for (let i = 0; i < 5; i += 1) {
        assert.equal(
          reasonOf(await auth.authenticate(bearer(await idp.mint(claimsFor(idp, `user-${i}`))))),
          'ok',
        );
      }
      assert.equal(idp.requests.discovery - start.discovery, 1);
      assert.equal(idp.requests.jwks - start.jwks, 1);
    } finally {
      await auth.close();
    }
  });

  it('accepts a token signed with a rotated-in key after refreshing the key set', async () => {
    const rotating = await startTestIssuer();
    const auth = createAuthenticator(oidcAuth(rotating.issuer), { jwksRefreshMinIntervalMs: 0 });
    try {
      const oldKid = rotating.keyring.signingKid;
      assert.equal(
        reasonOf(await auth.authenticate(bearer(await rotating.mint(claimsFor(rotating, 'a'))))),
        'ok',
      );
      const newKid = await rotating.keyring.rotate();
      assert.notEqual(newKid, oldKid);
      assert.equal(
        reasonOf(await auth.authenticate(bearer(await rotating.mint(claimsFor(rotating, 'b'))))),
        'ok',
      );
      assert.equal(rotating.requests.jwks, 2);
      const stillValid = await rotating.mint(claimsFor(rotating, 'c'), { kid: oldKid });
      assert.equal(reasonOf(await auth.authenticate(bearer(stillValid))), 'ok');
    } finally {
      await auth.close();
      await rotating.stop();
    }
  });

  it('keeps verifying a key the IdP withdrew until the key set is older than its max age, then refuses it', async (t) => {
    const own = await startTestIssuer();
    // jose times its key set cache with Date: mocked alone, so requests and timers run as usual.
    t.mock.timers.enable({ apis: ['Date'], now: Date.now() });
    const auth = createAuthenticator(oidcAuth(own.issuer));
    try {
      const withdrawn = own.keyring.signingKid;
      const tokenOf = (subject: string) => own.mint(claimsFor(own, subject), { kid: withdrawn });
      assert.equal(reasonOf(await auth.authenticate(bearer(await tokenOf('before')))), 'ok');
      await own.keyring.rotate();
      own.keyring.retire(withdrawn);
      // A new token each time: the token cache would answer a known one without the key set.
      t.mock.timers.tick(JWKS_MAX_AGE_MS - 1_000);
      assert.equal(reasonOf(await auth.authenticate(bearer(await tokenOf('within')))), 'ok');
      assert.equal(own.requests.jwks, 1, 'the key set was not read again');
      t.mock.timers.tick(2_000);
      assert.equal(reasonOf(await auth.authenticate(bearer(await tokenOf('after')))), 'unknown_kid');
      assert.equal(own.requests.jwks, 2);
    } finally {
      await auth.close();
      await own.stop();
    }
  });

  it('refreshes once on an unknown kid and still refuses it when the IdP does not have it', async () => {
    const own = await startTestIssuer();
    const auth = createAuthenticator(oidcAuth(own.issuer), { jwksRefreshMinIntervalMs: 0 });
    try {
      assert.equal(reasonOf(await auth.authenticate(bearer(await own.mint(claimsFor(own))))), 'ok');
      assert.equal(own.requests.jwks, 1);
      const [unknown] = await randomKidTokens(own, 1);
      assert.equal(reasonOf(await auth.authenticate(bearer(unknown ?? ''))), 'unknown_kid');
      assert.equal(own.requests.jwks, 2, 'the unknown kid triggered exactly one refresh');
    } finally {
      await auth.close();
      await own.stop();
    }
  });

  it('does not let a spray of random kids hammer the IdP', async () => {
    const own = await startTestIssuer();
    const auth = createAuthenticator(oidcAuth(own.issuer));
    try {
      assert.equal(reasonOf(await auth.authenticate(bearer(await own.mint(claimsFor(own))))), 'ok');
      for (const token of await randomKidTokens(own, 50)) {
        assert.equal(reasonOf(await auth.authenticate(bearer(token))), 'unknown_kid');
      }
      assert.ok(own.requests.jwks <= 2, `${own.requests.jwks} key set fetches for 50 unknown kids`);
      assert.equal(own.requests.discovery, 1);
    } finally {
      await auth.close();
      await own.stop();
    }
  });

  it('does not let a concurrent spray on a cold cache hammer the IdP', async () => {
    const own = await startTestIssuer();
    const auth = createAuthenticator(oidcAuth(own.issuer));
    try {
      const tokens = await randomKidTokens(own, 50);
      const results = await Promise.all(tokens.map((token) => auth.authenticate(bearer(token))));
      assert.deepEqual(new Set(results.map(reasonOf)), new Set(['unknown_kid']));
      assert.ok(own.requests.jwks <= 2, `${own.requests.jwks} key set fetches for 50 unknown kids`);
      assert.equal(own.requests.discovery, 1);
    } finally {
      await auth.close();
      await own.stop();
    }
  });

  it('refuses with jwks_unavailable when the IdP is down at first use, and recovers when it is back', async () => {
    const flaky = await startTestIssuer();
    const token = await flaky.mint(claimsFor(flaky));
    await flaky.stop();
    const auth = createAuthenticator(oidcAuth(flaky.issuer), { jwksRefreshMinIntervalMs: 0 });
    try {
      assert.equal(reasonOf(await auth.authenticate(bearer(token))), 'jwks_unavailable');
      await flaky.restart();
      assert.equal(reasonOf(await auth.authenticate(bearer(token))), 'ok');
    } finally {
      await auth.close();
      await flaky.stop();
    }
  });

  it("tells the caller only that the issuer's keys are unavailable, and keeps the detail for the record", async () => {
    const down = await startTestIssuer();
    const token = await down.mint(claimsFor(down));
    await down.stop();
    const auth = createAuthenticator(oidcAuth(down.issuer));
    try {
      const result = await auth.authenticate(bearer(token));
      assert.ok(!result.ok);
      assert.equal(result.message, "the token could not be verified: the issuer's keys are unavailable");
      assert.ok(result.detail.includes(new URL(down.issuer).host), result.detail);
      assert.match(result.detail, /ECONNREFUSED/);
    } finally {
      await auth.close();
    }
  });

  it('backs off after a failed fetch instead of trying the IdP on every request', async () => {
    const down = await startTestIssuer();
    const tokens = await Promise.all(
      Array.from({ length: 20 }, (_, i) => down.mint(claimsFor(down, `u${i}`))),
    );
    await down.stop();
    let attempts = 0;
    const counting: Dispatcher = new Agent().compose((dispatch) => (options, handler) => {
      attempts += 1;
      return dispatch(options, handler);
    });
    const auth = createAuthenticator(oidcAuth(down.issuer), { dispatcher: counting });
    try {
      for (const token of tokens)
        assert.equal(reasonOf(await auth.authenticate(bearer(token))), 'jwks_unavailable');
      assert.equal(attempts, 1);
    } finally {
      await auth.close();
      await counting.close();
    }
  });

  it('backs off from a key set whose entries are not objects, as from a failed fetch', async () => {
    for (const keySet of [{ keys: [null] }, { keys: [1] }]) {
      const broken = await startKeySetServer(keySet);
      const auth = createAuthenticator(oidcAuth(broken.issuer, { jwksUri: broken.jwksUri }));
      try {
        for (const token of await randomKidTokens(broken, 20)) {
          const result = await auth.authenticate(bearer(token));
          assert.equal(reasonOf(result), 'jwks_unavailable');
          assert.match(result.ok ? '' : result.detail, /did not answer a JWK set/);
        }
        assert.equal(broken.requests.jwks, 1, `${JSON.stringify(keySet)} was fetched once per backoff`);
      } finally {
        await auth.close();
        await broken.close();
      }
    }
  });

  it('follows the issuer to a new jwks_uri on an unknown kid, and when the old one fails', async () => {
    const moving = await startMovingIssuer();
    const auth = createAuthenticator(oidcAuth(moving.issuer), { jwksRefreshMinIntervalMs: 0 });
    try {
      assert.equal(reasonOf(await auth.authenticate(bearer(await moving.mint('a')))), 'ok');
      // The old URL still answers, with the old keys only: an unknown kid.
      await moving.moveTo('/keys/2', true);
      assert.equal(reasonOf(await auth.authenticate(bearer(await moving.mint('b')))), 'ok');
      // The old URL is gone: the key set cannot be read.
      await moving.moveTo('/keys/3', false);
      assert.equal(reasonOf(await auth.authenticate(bearer(await moving.mint('c')))), 'ok');
      assert.equal(moving.requests.discovery, 3);
    } finally {
      await auth.close();
      await moving.close();
    }
  });

  it('looks the jwks_uri up again at most once per refresh interval', async () => {
    const moving = await startMovingIssuer();
    const auth = createAuthenticator(oidcAuth(moving.issuer));
    try {
      assert.equal(reasonOf(await auth.authenticate(bearer(await moving.mint('a')))), 'ok');
      await moving.moveTo('/keys/2', false);
      for (const subject of ['b', 'c', 'd']) {
        assert.equal(reasonOf(await auth.authenticate(bearer(await moving.mint(subject)))), 'unknown_kid');
      }
      assert.equal(moving.requests.discovery, 1);
    } finally {
      await auth.close();
      await moving.close();
    }
  });

  it('refuses keys from a discovery document that names another issuer', async () => {
    const aliased = idp.issuer.replace('127.0.0.1', 'localhost');
    const auth = createAuthenticator(oidcAuth(aliased));
    try {
      const result = await auth.authenticate(bearer(await idp.mint({ ...claimsFor(idp), iss: aliased })));
      assert.equal(reasonOf(result), 'jwks_unavailable');
      // The issuer the document names, which the policy should have named.
      assert.equal(
        result.ok ? '' : result.detail,
        `discovery at ${aliased}/.well-known/openid-configuration names another issuer: "${idp.issuer}"`,
      );
    } finally {
      await auth.close();
    }
  });

  it('skips discovery when the policy sets jwksUri', async () => {
    const own = await startTestIssuer();
    const auth = createAuthenticator(oidcAuth(own.issuer, { jwksUri: own.jwksUri }));
    try {
      assert.equal(reasonOf(await auth.authenticate(bearer(await own.mint(claimsFor(own))))), 'ok');
      assert.deepEqual([own.requests.discovery, own.requests.jwks], [0, 1]);
    } finally {
      await auth.close();
      await own.stop();
    }
  });

  it('finds discovery under an issuer URL with a path', async () => {
    const realm = await startTestIssuer({ path: '/realms/dev' });
    const auth = createAuthenticator(oidcAuth(realm.issuer));
    try {
      assert.match(realm.issuer, /\/realms\/dev$/);
      assert.equal(reasonOf(await auth.authenticate(bearer(await realm.mint(claimsFor(realm))))), 'ok');
    } finally {
      await auth.close();
      await realm.stop();
    }
  });
});

describe('key sets with several keys for one token', () => {
  const kid = 'shared-kid';

  async function esKey(): Promise<{ privateKey: CryptoKey; jwk: JWK }> {
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    return { privateKey, jwk: { ...(await exportJWK(publicKey)), alg: 'ES256', use: 'sig' } };
  }

  function signed(issuer: string, key: CryptoKey, keyId: string | undefined): Promise<string> {
    return new SignJWT(claimsFor({ issuer }))
      .setProtectedHeader({ alg: 'ES256', ...(keyId === undefined ? {} : { kid: keyId }) })
      .setExpirationTime('5m')
      .sign(key);
  }

  it('tries each key published under a duplicate kid, and refuses a token none of them signed', async () => {
    const [decoy, real] = [await esKey(), await esKey()];
    const issuer = await startKeySetServer({ keys: [decoy.jwk, real.jwk].map((jwk) => ({ ...jwk, kid })) });
    const auth = createAuthenticator(oidcAuth(issuer.issuer, { jwksUri: issuer.jwksUri }));
    try {
      assert.equal(
        reasonOf(await auth.authenticate(bearer(await signed(issuer.issuer, real.privateKey, kid)))),
        'ok',
      );
      const forged = await auth.authenticate(
        bearer(await signed(issuer.issuer, (await esKey()).privateKey, kid)),
      );
      assert.equal(reasonOf(forged), 'bad_signature');
      assert.match(
        forged.ok ? '' : forged.detail,
        /none of the 2 published keys that match the token's header verifies/,
      );
    } finally {
      await auth.close();
      await issuer.close();
    }
  });

  it('tries each key of its algorithm for a token without a kid', async () => {
    const [first, second] = [await esKey(), await esKey()];
    const issuer = await startKeySetServer({ keys: [first.jwk, second.jwk] });
    const auth = createAuthenticator(oidcAuth(issuer.issuer, { jwksUri: issuer.jwksUri }));
    try {
      for (const key of [first, second]) {
        const result = await auth.authenticate(
          bearer(await signed(issuer.issuer, key.privateKey, undefined)),
        );
        assert.equal(reasonOf(result), 'ok');
      }
    } finally {
      await auth.close();
      await issuer.close();
    }
  });

  it('keeps the verdict of the key that verified: an expired token under a duplicate kid is expired', async () => {
    const [decoy, real] = [await esKey(), await esKey()];
    const issuer = await startKeySetServer({ keys: [decoy.jwk, real.jwk].map((jwk) => ({ ...jwk, kid })) });
    const auth = createAuthenticator(oidcAuth(issuer.issuer, { jwksUri: issuer.jwksUri }, 0));
    try {
      const expired = await new SignJWT(claimsFor({ issuer: issuer.issuer }))
        .setProtectedHeader({ alg: 'ES256', kid })
        .setExpirationTime(Math.floor(Date.now() / 1000) - 600)
        .sign(real.privateKey);
      assert.equal(reasonOf(await auth.authenticate(bearer(expired))), 'expired');
    } finally {
      await auth.close();
      await issuer.close();
    }
  });
});

describe('keys that cannot be used', () => {
  /** An RS256 token signed with node's crypto: jose refuses to sign with an RSA key under 2048 bits. */
  function rs256(privateKey: KeyObject, payload: JWTPayload, kid: string): string {
    const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const input = `${encode({ alg: 'RS256', kid })}.${encode(payload)}`;
    return `${input}.${sign('sha256', Buffer.from(input), privateKey).toString('base64url')}`;
  }

  it('says in the record that the issuer published an RSA key under 2048 bits, and not to the caller', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const jwk = { ...publicKey.export({ format: 'jwk' }), kid: 'weak', alg: 'RS256', use: 'sig' };
    const issuer = await startKeySetServer({ keys: [jwk] });
    const auth = createAuthenticator(oidcAuth(issuer.issuer, { jwksUri: issuer.jwksUri }));
    try {
      const exp = Math.floor(Date.now() / 1000) + 300;
      const result = await auth.authenticate(
        bearer(rs256(privateKey, { ...claimsFor(issuer), exp }, 'weak')),
      );
      assert.ok(!result.ok);
      assert.equal(result.reason, 'jwks_unavailable');
      assert.match(
        result.detail,
        /cannot be used: TypeError: RS256 requires key modulusLength to be 2048 bits/,
      );
      assert.doesNotMatch(result.message, /2048|TypeError/);
    } finally {
      await auth.close();
      await issuer.close();
    }
  });

  it('says in the record that a published key cannot be imported', async () => {
    // A private member no key could have: the JWK cannot be imported at all.
    const jwk = { ...(await exportJWK((await generateKeyPair('ES256')).publicKey)), d: '!' };
    const issuer = await startKeySetServer({ keys: [{ ...jwk, kid: 'broken', alg: 'ES256' }] });
    const auth = createAuthenticator(oidcAuth(issuer.issuer, { jwksUri: issuer.jwksUri }));
    try {
      const result = await auth.authenticate(
        bearer(await foreignToken(claimsFor(issuer), { kid: 'broken' })),
      );
      assert.ok(!result.ok);
      assert.equal(result.reason, 'jwks_unavailable');
      assert.match(result.detail, /the issuer's key for this token cannot be used: DataError/);
    } finally {
      await auth.close();
      await issuer.close();
    }
  });
});

describe('issuers with their own CA', () => {
  let idp: TestIssuer;
  let ca: string;

  before(async () => {
    const testdata = new URL('./testdata/', import.meta.url);
    const [key, cert] = await Promise.all([
      readFile(new URL('server-key.pem', testdata), 'utf8'),
      readFile(new URL('server.pem', testdata), 'utf8'),
    ]);
    ca = await readFile(new URL('ca.pem', testdata), 'utf8');
    idp = await startTestIssuer({ tls: { key, cert } });
  });

  after(async () => {
    await idp.stop();
  });

  it('verifies against an HTTPS issuer whose CA is given for it', async () => {
    assert.match(idp.issuer, /^https:/);
    const auth = createAuthenticator(oidcAuth(idp.issuer), { issuerCa: { [idp.issuer]: ca } });
    try {
      assert.equal(reasonOf(await auth.authenticate(bearer(await idp.mint(claimsFor(idp))))), 'ok');
    } finally {
      await auth.close();
    }
  });

  it('does not trust the issuer without its CA', async () => {
    const auth = createAuthenticator(oidcAuth(idp.issuer));
    try {
      assert.equal(
        reasonOf(await auth.authenticate(bearer(await idp.mint(claimsFor(idp))))),
        'jwks_unavailable',
      );
    } finally {
      await auth.close();
    }
  });
});
