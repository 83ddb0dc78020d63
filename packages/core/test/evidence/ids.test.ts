import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createUlidGenerator } from '../../src/evidence/ids.ts';
import { ulidSchema } from '../../src/evidence/record.ts';

const zeros = (bytes: Uint8Array) => bytes.fill(0);

test('the time part encodes milliseconds in Crockford base32 (the ULID reference value)', () => {
  const ulid = createUlidGenerator({ now: () => 1469918176385, random: zeros });
  assert.equal(ulid(), '01ARYZ6S410000000000000000');
});

test('ids within one millisecond increase by one in the random part', () => {
  const ulid = createUlidGenerator({ now: () => 1469918176385, random: (b) => b.fill(0xff).fill(0, 0, 1) });
  const first = ulid();
  const second = ulid();
  assert.equal(first, '01ARYZ6S4103ZZZZZZZZZZZZZZ');
  assert.equal(second, '01ARYZ6S410400000000000000');
});

test('ids keep sorting in creation order when the clock steps back', () => {
  const times = [5000, 5000, 4000, 6000];
  const ulid = createUlidGenerator({ now: () => times.shift() ?? 0 });
  const ids = [ulid(), ulid(), ulid(), ulid()];
  assert.deepEqual([...ids].sort(), ids);
  assert.equal(new Set(ids).size, 4);
  assert.equal(ids[2]?.slice(0, 10), ids[1]?.slice(0, 10));
});

test('a fresh millisecond draws fresh randomness and ids pass the record schema', () => {
  let draws = 0;
  let time = 1_700_000_000_000;
  const ulid = createUlidGenerator({ now: () => time++, random: (b) => b.fill(++draws) });
  const ids = Array.from({ length: 3 }, ulid);
  assert.equal(draws, 3);
  for (const id of ids) assert.ok(ulidSchema.safeParse(id).success, id);
});

test('the random part overflowing within one millisecond is an error, not a wrap', () => {
  const ulid = createUlidGenerator({ now: () => 1, random: (b) => b.fill(0xff) });
  ulid();
  assert.throws(ulid, RangeError);
});

test('a time outside 48 bits is rejected', () => {
  assert.throws(createUlidGenerator({ now: () => 2 ** 48 }), RangeError);
  assert.throws(createUlidGenerator({ now: () => -1 }), RangeError);
});
