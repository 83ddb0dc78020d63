import assert from 'node:assert/strict';
import { link, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { sha256Hex } from '@veil/core';
import { DirEvidenceStore } from '../../src/audit/dirstore.ts';
import { EvidenceConflictError } from '../../src/audit/store.ts';
import { teardown, tempDir } from './helpers.ts';

const key = 'v1/c/ns/uid/inc/batches/00000000000000000001.ndjson.gz';
const object = (text: string, at = key) => ({
  key: at,
  bytes: Buffer.from(text),
  sha256: sha256Hex(text),
  retainUntil: new Date(),
});

test('an object lands at its key path, whole, with no temporary file left', async (t) => {
  const dir = await tempDir(teardown(t));
  const store = new DirEvidenceStore(dir);
  await store.put(object('evidence'));
  assert.equal(await readFile(join(dir, ...key.split('/')), 'utf8'), 'evidence');
  assert.deepEqual(await readdir(join(dir, 'v1/c/ns/uid/inc/batches')), ['00000000000000000001.ndjson.gz']);
});

test('the same bytes again count as stored; other bytes are a conflict and change nothing', async (t) => {
  const dir = await tempDir(teardown(t));
  const store = new DirEvidenceStore(dir);
  await store.put(object('first'));
  await store.put(object('first'));
  await assert.rejects(store.put(object('second')), EvidenceConflictError);
  assert.equal(await readFile(join(dir, ...key.split('/')), 'utf8'), 'first');
});

test('a temporary name a crash left linked to a published object cannot rewrite it', async (t) => {
  const dir = await tempDir(teardown(t));
  const store = new DirEvidenceStore(dir);
  await store.put(object('first'));
  // Killed between linking the temporary file to the key and removing it.
  const path = join(dir, ...key.split('/'));
  await link(path, `${path}.tmp`);
  await assert.rejects(store.put(object('second')), EvidenceConflictError);
  assert.equal(await readFile(path, 'utf8'), 'first');
  await store.put(object('first'));
  assert.equal(await readFile(path, 'utf8'), 'first');
});

test('a key cannot reach outside the directory', async (t) => {
  const store = new DirEvidenceStore(await tempDir(teardown(t)));
  await assert.rejects(store.put(object('x', '../escape.json')), RangeError);
});
