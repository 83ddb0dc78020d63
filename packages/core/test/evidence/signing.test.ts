import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  exportSigningKey,
  generateSigningKey,
  importSigningKey,
  jwkThumbprint,
} from '../../src/evidence/keys.ts';
import { canonicalJson, signManifest, verifyManifestSignature } from '../../src/evidence/signing.ts';

// RFC 8037 appendix A: an Ed25519 key and its RFC 7638 thumbprint.
const rfcKey = {
  kty: 'OKP',
  crv: 'Ed25519',
  d: 'nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A',
  x: '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo',
} as const;

test('the key id is the RFC 7638 thumbprint (RFC 8037 example)', () => {
  const key = importSigningKey(rfcKey);
  assert.equal(key.keyId, 'kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k');
  assert.equal(jwkThumbprint(key.publicJwk), key.keyId);
  assert.deepEqual(key.publicJwk, { kty: 'OKP', crv: 'Ed25519', x: rfcKey.x });
});

test('a saved key signs as the original did', () => {
  const key = generateSigningKey();
  const restored = importSigningKey(exportSigningKey(key));
  assert.equal(restored.keyId, key.keyId);
  const document = { a: 1 };
  const signature = signManifest(document, restored);
  assert.ok(verifyManifestSignature({ ...document, signature }, key.publicJwk));
});

test('canonical JSON sorts keys and drops whitespace (RFC 8785)', () => {
  assert.equal(
    canonicalJson({ b: [1, { d: true, c: null }], a: 'é' }),
    '{"a":"é","b":[1,{"c":null,"d":true}]}',
  );
  assert.throws(() => canonicalJson(undefined), TypeError);
});

test('a signature covers every member but itself, in any key order', () => {
  const key = generateSigningKey();
  const manifest = { format: 'x', seq: 2, nested: { a: 1, b: 2 } };
  const signed = { ...manifest, signature: signManifest(manifest, key) };
  assert.ok(verifyManifestSignature(signed, key.publicJwk));
  const reordered = { signature: signed.signature, nested: { b: 2, a: 1 }, seq: 2, format: 'x' };
  assert.ok(verifyManifestSignature(reordered, key.publicJwk));
  // Signing an already signed document ignores its old signature.
  assert.equal(signManifest(signed, key), signed.signature);
});

test('tampering, another key or a mangled signature fail verification without throwing', () => {
  const key = generateSigningKey();
  const manifest = { seq: 1, key: 'v1/a/b/c/d/manifests/00000000000000000001.json' };
  const signature = signManifest(manifest, key);
  const changed = { ...manifest, seq: 2, signature };
  const extended = { ...manifest, extra: 1, signature };
  assert.equal(verifyManifestSignature(changed, key.publicJwk), false);
  assert.equal(verifyManifestSignature(extended, key.publicJwk), false);
  assert.equal(verifyManifestSignature({ ...manifest, signature }, generateSigningKey().publicJwk), false);
  assert.equal(verifyManifestSignature({ ...manifest, signature: `${signature}!` }, key.publicJwk), false);
  assert.equal(verifyManifestSignature({ ...manifest, signature: signature.slice(2) }, key.publicJwk), false);
  const badKey = { kty: 'OKP', crv: 'Ed25519', x: 'A'.repeat(43) } as const;
  assert.equal(verifyManifestSignature({ ...manifest, signature }, badKey), false);
});
