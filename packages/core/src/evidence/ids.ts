import { randomFillSync } from 'node:crypto';

// Crockford base32, as the ULID specification spells it.
const alphabet = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const maxTime = 2 ** 48 - 1;
const randomBytes = 10;

export type UlidSources = {
  /** Milliseconds since the epoch. */
  now?: () => number;
  /** Fills the array with random bytes. */
  random?: (bytes: Uint8Array) => void;
};

export type UlidGenerator = () => string;

/**
 * A monotonic ULID generator: within one millisecond (or when the clock steps
 * back) the random part of the previous id is incremented, so ids sort in the
 * order they were made.
 */
export function createUlidGenerator(sources: UlidSources = {}): UlidGenerator {
  const now = sources.now ?? Date.now;
  const random = sources.random ?? ((bytes: Uint8Array) => randomFillSync(bytes));
  let lastTime = -1;
  const entropy = new Uint8Array(randomBytes);
  return () => {
    const time = Math.floor(now());
    if (!Number.isSafeInteger(time) || time < 0 || time > maxTime) {
      throw new RangeError('ULID time is out of range');
    }
    if (time > lastTime) {
      lastTime = time;
      random(entropy);
    } else {
      increment(entropy);
    }
    return encodeTime(lastTime) + encodeEntropy(entropy);
  };
}

function increment(bytes: Uint8Array): void {
  for (let i = bytes.length - 1; i >= 0; i--) {
    const next = (bytes[i] ?? 0) + 1;
    if (next <= 0xff) {
      bytes[i] = next;
      return;
    }
    bytes[i] = 0;
  }
  // Wrapping around would break the ordering promise: 2^80 ids in one millisecond.
  throw new RangeError('ULID random part overflowed within one millisecond');
}

function encodeTime(time: number): string {
  let out = '';
  let rest = time;
  for (let i = 0; i < 10; i++) {
    out = alphabet.charAt(rest % 32) + out;
    rest = Math.floor(rest / 32);
  }
  return out;
}

/** 80 bits, most significant first, five at a time: every record id pays for this, so no BigInt. */
function encodeEntropy(bytes: Uint8Array): string {
  let out = '';
  let pending = 0;
  let bits = 0;
  for (const byte of bytes) {
    pending = ((pending << 8) | byte) & 0xfff;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += alphabet.charAt((pending >>> bits) & 31);
    }
  }
  return out;
}
