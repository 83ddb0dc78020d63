// Ed25519 signing keys of an audit stream. The key id is the RFC 7638 JWK
// thumbprint, so anyone holding the public JWK can recompute it.
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
} from 'node:crypto';
import { z } from 'zod';

const base64url = (length: number) => z.string().regex(new RegExp(`^[A-Za-z0-9_-]{${length}}$`));

export const ed25519PublicJwkSchema = z.strictObject({
  kty: z.literal('OKP'),
  crv: z.literal('Ed25519'),
  x: base64url(43),
});
export type Ed25519PublicJwk = z.infer<typeof ed25519PublicJwkSchema>;

export const ed25519PrivateJwkSchema = ed25519PublicJwkSchema.extend({ d: base64url(43) });
export type Ed25519PrivateJwk = z.infer<typeof ed25519PrivateJwkSchema>;

export type SigningKey = {
  readonly privateKey: KeyObject;
  readonly publicJwk: Ed25519PublicJwk;
  readonly keyId: string;
};

export function generateSigningKey(): SigningKey {
  return signingKeyFrom(generateKeyPairSync('ed25519').privateKey);
}

/** Restores a key saved with `exportSigningKey` (a restarted sidecar still signs its old stream). */
export function importSigningKey(jwk: Ed25519PrivateJwk): SigningKey {
  return signingKeyFrom(createPrivateKey({ key: ed25519PrivateJwkSchema.parse(jwk), format: 'jwk' }));
}

export function exportSigningKey(key: SigningKey): Ed25519PrivateJwk {
  return ed25519PrivateJwkSchema.parse(key.privateKey.export({ format: 'jwk' }));
}

export function publicKeyFromJwk(jwk: Ed25519PublicJwk): KeyObject {
  return createPublicKey({ key: jwk, format: 'jwk' });
}

/** RFC 7638: SHA-256 over the required members in lexicographic order, no whitespace. */
export function jwkThumbprint(jwk: Ed25519PublicJwk): string {
  const canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x });
  return createHash('sha256').update(canonical).digest('base64url');
}

function signingKeyFrom(privateKey: KeyObject): SigningKey {
  const publicJwk = ed25519PublicJwkSchema.parse(createPublicKey(privateKey).export({ format: 'jwk' }));
  return { privateKey, publicJwk, keyId: jwkThumbprint(publicJwk) };
}
