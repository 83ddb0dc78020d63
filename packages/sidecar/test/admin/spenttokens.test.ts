// The record of spent push tokens: a jti is refused while its token could still
// verify, the record never grows past its bound, and with a file it outlives a
// restart of the container.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { SpentTokens } from '../../src/admin/spenttokens.ts';

test('a jti is spent once', async () => {
  const spent = await SpentTokens.open({ capacity: 4, now: () => 100 });
  assert.equal(await spent.spend('a', 160), 'spent');
  assert.equal(await spent.spend('a', 160), 'replayed');
  assert.equal(await spent.spend('b', 160), 'spent');
});

test('when full it forgets only expired tokens, and refuses rather than forget a live one', async () => {
  let now = 100;
  const spent = await SpentTokens.open({ capacity: 2, now: () => now });
  assert.equal(await spent.spend('a', 110), 'spent');
  assert.equal(await spent.spend('b', 160), 'spent');
  assert.equal(await spent.spend('c', 160), 'full');
  now = 111;
  assert.equal(await spent.spend('c', 170), 'spent', 'a expired and made room');
  assert.equal(await spent.spend('b', 160), 'replayed', 'b is still remembered');
  assert.equal(await spent.spend('d', 170), 'full');
});

test('a restart on the same file still refuses the tokens spent before it, and forgets expired ones', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'veil-spent-'));
  try {
    const file = join(dir, 'state', 'spent-push-tokens.json');
    let now = 100;
    const before = await SpentTokens.open({ file, now: () => now });
    assert.equal(await before.spend('short', 110), 'spent');
    assert.equal(await before.spend('long', 160), 'spent');

    now = 120;
    const restarted = await SpentTokens.open({ file, now: () => now });
    assert.equal(await restarted.spend('long', 160), 'replayed');
    assert.equal(await restarted.spend('fresh', 180), 'spent');
    assert.deepEqual(JSON.parse(await readFile(file, 'utf8')), { long: 160, fresh: 180 });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('refuses a token it cannot save, and a start on a record it cannot read', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'veil-spent-'));
  try {
    // A directory where the record's temporary file goes: every save fails.
    const file = join(dir, 'spent-push-tokens.json');
    await mkdir(`${file}.tmp`);
    const spent = await SpentTokens.open({ file, now: () => 100 });
    assert.equal(await spent.spend('a', 160), 'unrecorded');
    assert.equal(await spent.spend('a', 160), 'replayed', 'refused once, it stays spent');

    const garbled = join(dir, 'garbled.json');
    await writeFile(garbled, '{"a": "not a time"}');
    await assert.rejects(SpentTokens.open({ file: garbled }), {
      message: `the spent push tokens in ${garbled} are not a record this sidecar wrote; delete the file to start afresh`,
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
