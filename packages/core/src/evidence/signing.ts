// Manifest signatures: Ed25519 over the RFC 8785 canonical JSON of the manifest
// without its `signature` member. Canonical JSON makes the signed bytes
// independent of how a verifier's JSON library orders keys.
import { sign, verify } from 'node:crypto';
import canonicalize from 'canonicalize';
import { type Ed25519PublicJwk, publicKeyFromJwk, type SigningKey } from './keys.ts';

/** RFC 8785 JSON Canonicalization Scheme. */
export function canonicalJson(value: unknown): string {
  const text = canonicalize(value);
  if (text === undefined) throw new TypeError('value has no JSON representation');
  return text;
}

function signedBytes<T extends { signature?: unknown }>(document: T): Buffer {
  const { signature: _signature, ...unsigned } = document;
  return Buffer.from(canonicalJson(unsigned), 'utf8');
}

/** The base64url signature of `manifest`, ignoring any `signature` it already has. */
export function signManifest(manifest: object, key: SigningKey): string {
  return sign(null, signedBytes(manifest), key.privateKey).toString('base64url');
}

/** False for a wrong signature, a malformed one or a malformed key: never throws. */
export function verifyManifestSignature(
  manifest: { signature: string },
  publicJwk: Ed25519PublicJwk,
): boolean {
  try {
    const signature = Buffer.from(manifest.signature, 'base64url');
    // Node's decoder skips junk characters; only the one canonical spelling counts.
    if (signature.toString('base64url') !== manifest.signature) return false;
    return verify(null, signedBytes(manifest), publicKeyFromJwk(publicJwk), signature);
  } catch {
    return false;
  }
}
