import { createHmac, createSecretKey, type KeyObject } from 'node:crypto';
import type { AuditRecordInput, PolicySpec } from '@veil/core';

type RecordedInputs = AuditRecordInput['inputs'];

/** The longest masked text a record holds (the record schema's limit). */
export const MAX_RECORDED_TEXT = 65_536;

/**
 * Inputs as the record keeps them. A keyed digest lets an auditor holding the
 * key confirm that a given text was sent, without the record holding it.
 * Token-array inputs are only ever digested: they are not readable text, and
 * neither are masked texts too long for a record.
 */
export function recordedInputs(
  mode: PolicySpec['audit']['inputs'],
  texts: readonly string[],
  tokenInputs: readonly (readonly number[])[] | null,
  key: Uint8Array,
): RecordedInputs {
  if (mode === 'none') return undefined;
  if (tokenInputs) return tokenInputs.map((tokens) => ({ digest: keyedDigest(key, JSON.stringify(tokens)) }));
  // A text too long for the record is digested: a record that cannot be written
  // would leave the request with no record at all.
  if (mode === 'masked') {
    return texts.map((text) =>
      text.length <= MAX_RECORDED_TEXT ? { masked: text } : { digest: keyedDigest(key, text) },
    );
  }
  return texts.map((text) => ({ digest: keyedDigest(key, text) }));
}

function keyedDigest(key: Uint8Array, value: string): string {
  return `hmac-sha256:${createHmac('sha256', secretKey(key)).update(value).digest('hex')}`;
}

// Importing raw key bytes costs more than the HMAC of a short input: do it once per key.
const secretKeys = new WeakMap<Uint8Array, KeyObject>();

function secretKey(key: Uint8Array): KeyObject {
  let secret = secretKeys.get(key);
  if (!secret) {
    secret = createSecretKey(key);
    secretKeys.set(key, secret);
  }
  return secret;
}
