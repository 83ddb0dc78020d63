// How a pull puts files on disk, on a real temporary folder: only inside its
// own directory, failures named by file, and an index of any length.
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CliError } from '../src/command.ts';
import { readIndex } from '../src/evidence/load.ts';
import { writeAtomic, writeIndex } from '../src/evidence/save.ts';
import { indexFile, metaFile, type ObjectMeta, objectFile } from '../src/evidence/store.ts';

let work: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'veil-save-'));
});

after(async () => {
  await rm(work, { recursive: true, force: true });
});

test('a write creates the folders below the directory, and never the directory itself', async () => {
  const out = join(work, 'made');
  const file = objectFile('v1/a/b/c.json', 'v1');
  await assert.rejects(writeAtomic(out, file, 'late'), (error: Error) => {
    assert.ok(error instanceof CliError, String(error));
    assert.equal(error.message, `cannot write ${join(out, file)}: no such file or directory (ENOENT)`);
    return true;
  });
  await assert.rejects(stat(out), { code: 'ENOENT' });

  await mkdir(out);
  await writeAtomic(out, file, 'kept');
  assert.equal((await stat(join(out, file))).size, 4);
});

test('a regular file where a folder is needed fails the write naming the file and the reason', async () => {
  const out = await mkdtemp(join(work, 'blocked-'));
  await writeFile(join(out, 'objects'), 'in the way');
  const file = metaFile('v1/x.json', 'v1');
  await assert.rejects(writeAtomic(out, file, '{}'), (error: Error) => {
    assert.ok(error instanceof CliError, String(error));
    assert.equal(error.exitCode, 2);
    assert.equal(error.message, `cannot write ${join(out, file)}: not a directory (ENOTDIR)`);
    return true;
  });
});

function meta(index: number): ObjectMeta {
  const key = `v1/prod/ml/pod/0/batches/${String(index).padStart(20, '0')}.ndjson.gz`;
  return {
    key,
    versionId: `v${index}`,
    isLatest: true,
    isDeleteMarker: false,
    lastModified: '2025-06-01T00:00:00.000Z',
    size: index,
    checksumSHA256: 'x'.repeat(44),
    checksumType: 'FULL_OBJECT',
    lockMode: 'COMPLIANCE',
    retainUntil: '2026-06-01T00:00:00.000Z',
    sha256: 'a'.repeat(64),
    file: objectFile(key, `v${index}`),
  };
}

test('the index is written as it is produced, not gathered whole first, and reads back line by line', async () => {
  const out = await mkdtemp(join(work, 'index-'));
  const count = 5000;
  const written: ObjectMeta[] = [];
  let onDiskBeforeLast = 0;
  function* produce(): Generator<ObjectMeta> {
    for (let index = 0; index < count; index += 1) {
      if (index === count - 1) onDiskBeforeLast = statSize(join(out, `${indexFile}.partial`));
      const next = meta(index);
      written.push(next);
      yield next;
    }
  }
  await writeIndex(out, produce());
  assert.ok(onDiskBeforeLast > 0, 'nothing of the index was written before its last line was produced');
  assert.deepEqual(await readdir(out), [indexFile]);
  const read: ObjectMeta[] = [];
  await readIndex(out, indexFile, (entry) => read.push(entry));
  assert.deepEqual(read, written);
});

test('a bad index line is named by its number in the file', async () => {
  const out = await mkdtemp(join(work, 'bad-index-'));
  await writeFile(join(out, indexFile), `${JSON.stringify(meta(1))}\n\nnot json\n`);
  await assert.rejects(
    readIndex(out, indexFile, () => undefined),
    {
      message: `${out}: ${indexFile} line 3 is not JSON`,
    },
  );
});

/** The size of a file, 0 while it does not exist. */
function statSize(path: string): number {
  return statSync(path, { throwIfNoEntry: false })?.size ?? 0;
}
