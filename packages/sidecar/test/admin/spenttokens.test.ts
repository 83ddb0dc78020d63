// The record of spent push tokens: a jti is refused while its token could still
// verify, the record never grows past its bound, and with a file it outlives a
// restart of the container.
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { type Presented, SpentTokens } from '../../src/admin/spenttokens.ts';
import { teardown, tempDir } from '../audit/helpers.ts';

/** A token that verifies until `until`, issued 90 s before, as the controller's are. */
const token = (jti: string, until: number, issuedAt = until - 90): Presented => ({ jti, until, issuedAt });

test('a jti is spent once', async () => {
  const spent = await SpentTokens.open({ capacity: 4, now: () => 100 });
  assert.equal(await spent.spend(token('a', 160)), 'spent');
  assert.equal(await spent.spend(token('a', 160)), 'replayed');
  assert.equal(await spent.spend(token('b', 160)), 'spent');
});

test('when full it forgets only expired tokens, and refuses rather than forget a live one', async () => {
  let now = 100;
  const spent = await SpentTokens.open({ capacity: 2, now: () => now });
  assert.equal(await spent.spend(token('a', 110)), 'spent');
  assert.equal(await spent.spend(token('b', 160)), 'spent');
  assert.equal(await spent.spend(token('c', 160)), 'full');
  now = 111;
  assert.equal(await spent.spend(token('c', 170)), 'spent', 'a expired and made room');
  assert.equal(await spent.spend(token('b', 160)), 'replayed', 'b is still remembered');
  assert.equal(await spent.spend(token('d', 170)), 'full');
});

test('a restart on the same file still refuses the tokens spent before it, and forgets expired ones', async (t) => {
  const dir = await tempDir(teardown(t), 'veil-spent-');
  const file = join(dir, 'state', 'spent-push-tokens.json');
  let now = 100;
  const before = await SpentTokens.open({ file, now: () => now });
  assert.equal(await before.spend(token('short', 110)), 'spent');
  assert.equal(await before.spend(token('long', 160)), 'spent');

  now = 120;
  const restarted = await SpentTokens.open({ file, now: () => now });
  assert.equal(await restarted.spend(token('long', 160)), 'replayed');
  assert.equal(await restarted.spend(token('fresh', 180)), 'spent');
  assert.deepEqual(JSON.parse(await readFile(file, 'utf8')), { long: 160, fresh: 180 });
});

test('refuses a token it cannot save', async (t) => {
  const dir = await tempDir(teardown(t), 'veil-spent-');
  // A directory where the record's temporary file goes: every save fails.
  const file = join(dir, 'spent-push-tokens.json');
  await mkdir(`${file}.tmp`);
  const spent = await SpentTokens.open({ file, now: () => 100 });
  assert.equal(await spent.spend(token('a', 160)), 'unrecorded');
  assert.equal(await spent.spend(token('a', 160)), 'replayed', 'refused once, it stays spent');
});

test('a record it cannot read refuses every token issued before the start, and only those', async (t) => {
  const dir = await tempDir(teardown(t), 'veil-spent-');
  const garbled = join(dir, 'spent-push-tokens.json');
  await writeFile(garbled, '{"a": "not a time"}');
  const logged: string[] = [];
  const now = 1000;
  const spent = await SpentTokens.open({
    file: garbled,
    now: () => now,
    clockToleranceSeconds: 30,
    log: (message) => logged.push(message),
  });
  assert.deepEqual(logged, [
    `the spent push tokens in ${garbled} are not a record this sidecar wrote: tokens issued before this start are refused, and the controller's next push replaces the record`,
  ]);
  assert.equal(await spent.spend(token('captured', 1080, 995)), 'forgotten');
  assert.equal(await spent.spend(token('ahead', 1110, 1020)), 'forgotten', 'within the clock tolerance');
  assert.equal(await spent.spend(token('fresh', 1125, 1035)), 'spent');
  const restarted = await SpentTokens.open({ file: garbled, now: () => now });
  assert.equal(await restarted.spend(token('fresh', 1125, 1035)), 'replayed', 'the record is whole again');
});
