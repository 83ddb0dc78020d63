// The record of spent push tokens: a jti is refused while its token could still
// verify, and the record never grows past its bound.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SpentTokens } from '../../src/admin/spenttokens.ts';

test('a jti is spent once', () => {
  const spent = new SpentTokens(4, () => 100);
  assert.equal(spent.spend('a', 160), 'spent');
  assert.equal(spent.spend('a', 160), 'replayed');
  assert.equal(spent.spend('b', 160), 'spent');
});

test('when full it forgets only expired tokens, and refuses rather than forget a live one', () => {
  let now = 100;
  const spent = new SpentTokens(2, () => now);
  assert.equal(spent.spend('a', 110), 'spent');
  assert.equal(spent.spend('b', 160), 'spent');
  assert.equal(spent.spend('c', 160), 'full');
  now = 111;
  assert.equal(spent.spend('c', 170), 'spent', 'a expired and made room');
  assert.equal(spent.spend('b', 160), 'replayed', 'b is still remembered');
  assert.equal(spent.spend('d', 170), 'full');
});
