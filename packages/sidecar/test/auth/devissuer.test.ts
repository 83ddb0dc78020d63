// The dev issuer is what `veil dev` hands developers: its tokens must verify
// like a real IdP's and it must never publish private key material.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { request } from 'undici';
import {
  createDevKeyring,
  type DevIssuer,
  devIssuerAlgorithms,
  startDevIssuer,
} from '../../src/auth/devissuer.ts';

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

describe('dev issuer', () => {
  let issuer: DevIssuer;

  before(async () => {
    issuer = await startDevIssuer({ path: '/dev' });
  });

  after(async () => {
    await issuer.close();
  });

  it('serves a discovery document naming itself and its JWKS', async () => {
    const response = await request(`${issuer.issuer}/.well-known/openid-configuration`);
    assert.equal(response.statusCode, 200);
    const document = (await response.body.json()) as Record<string, unknown>;
    assert.equal(document.issuer, issuer.issuer);
    assert.equal(document.jwks_uri, issuer.jwksUri);
    assert.deepEqual(document.id_token_signing_alg_values_supported, ['ES256']);
  });

  it('mints tokens that verify against its published keys', async () => {
    const token = await issuer.mint({ sub: 'dev', aud: 'veil' });
    const jwks = (await (await request(issuer.jwksUri)).body.json()) as { keys: [] };
    const { payload } = await jwtVerify(token, createLocalJWKSet(jwks), {
      issuer: issuer.issuer,
      audience: 'veil',
    });
    assert.equal(payload.sub, 'dev');
    assert.equal(typeof payload.exp, 'number');
    assert.equal(decodeProtectedHeader(token).kid, issuer.keyring.signingKid);
  });

  it('answers 404 elsewhere and 405 to anything but GET', async () => {
    assert.equal((await request(`${issuer.issuer}/token`)).statusCode, 404);
    assert.equal((await request(issuer.jwksUri, { method: 'POST', body: '{}' })).statusCode, 405);
  });

  it('publishes only public key material, for every algorithm it offers', async () => {
    const keyring = await createDevKeyring();
    for (const algorithm of devIssuerAlgorithms) await keyring.addKey({ algorithm });
    const { keys } = keyring.jwks();
    assert.equal(keys.length, devIssuerAlgorithms.length + 1);
    for (const key of keys) {
      for (const member of PRIVATE_MEMBERS)
        assert.equal(member in key, false, `${key.alg} key publishes ${member}`);
      assert.equal(key.use, 'sig');
    }
  });

  it('keeps unpublished and retired keys out of the JWKS', async () => {
    const keyring = await createDevKeyring();
    const hidden = await keyring.addKey({ publish: false });
    const first = keyring.signingKid;
    const second = await keyring.rotate();
    keyring.retire(first);
    assert.deepEqual(
      keyring.jwks().keys.map((key) => key.kid),
      [second],
    );
    assert.notEqual(hidden, second);
  });
});
