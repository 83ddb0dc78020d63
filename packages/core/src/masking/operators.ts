// The four ways a matched value is replaced.
import { createHmac, createSecretKey } from 'node:crypto';
import type { MaskingRule } from '../policy/schema.ts';

export type MaskOperator = MaskingRule['operator'];

/** Turns a matched value into its replacement; `hashInput` is the normalised value. */
export type Replace = (value: string, label: string, hashInput: string) => string;

/** Hex characters of the HMAC kept in a hash token: 64 bits. */
const tokenHexLength = 16;
/** Below this many letters and digits, revealing four would reveal too much. */
const minLengthToReveal = 8;
const revealed = 4;

export function redact(_value: string, label: string): string {
  return `[${label}]`;
}

/**
 * Keeps the shape: separators stay, letters and digits become `*` except the last
 * four, which stay visible only when at least as many are hidden.
 */
export function mask(value: string): string {
  const chars = Array.from(value);
  const alphanumeric = /[\p{L}\p{N}]/u;
  const total = chars.filter((ch) => alphanumeric.test(ch)).length;
  let keep = total >= minLengthToReveal ? revealed : 0;
  for (let i = chars.length - 1; i >= 0; i--) {
    const ch = chars[i] ?? '';
    if (!alphanumeric.test(ch)) continue;
    if (keep > 0) keep--;
    else chars[i] = '*';
  }
  return chars.join('');
}

export function hashWith(key: Uint8Array): Replace {
  // A KeyObject holds its own copy: later changes to the caller's bytes cannot shift tokens.
  const secret = createSecretKey(key);
  return (_value, label, hashInput) => {
    const digest = createHmac('sha256', secret).update(hashInput, 'utf8').digest('hex');
    return `[${label}:${digest.slice(0, tokenHexLength)}]`;
  };
}

export function drop(): string {
  return '';
}

export function operatorFor(operator: MaskOperator, hashKey: Uint8Array): Replace {
  switch (operator) {
    case 'redact':
      return redact;
    case 'mask':
      return mask;
    case 'hash':
      return hashWith(hashKey);
    case 'drop':
      return drop;
  }
}
