import { createHmac } from 'node:crypto';
import type { AuditRecordInput, PolicySpec } from '@veil/core';

type RecordedInputs = AuditRecordInput['inputs'];

/**
 * Inputs as the record keeps them. A keyed digest lets an auditor holding the
 * key confirm that a given text was sent, without the record holding it.
 * Token-array inputs are only ever digested: they are not readable text.
 */
export function recordedInputs(
  mode: PolicySpec['audit']['inputs'],
  texts: readonly string[],
  tokenInputs: readonly (readonly number[])[] | null,
  key: Uint8Array,
): RecordedInputs {
  if (mode === 'none') return undefined;
  if (tokenInputs) return tokenInputs.map((tokens) => ({ digest: keyedDigest(key, JSON.stringify(tokens)) }));
  if (mode === 'masked') return texts.map((text) => ({ masked: text }));
  return texts.map((text) => ({ digest: keyedDigest(key, text) }));
}

function keyedDigest(key: Uint8Array, value: string): string {
  return `hmac-sha256:${createHmac('sha256', key).update(value).digest('hex')}`;
}
