import assert from 'node:assert/strict';
import { posix } from 'node:path';
import { test } from 'node:test';
import { metaFile, objectFile, objectMetaSchema } from '../src/evidence/store.ts';

test('evidence keys keep their readable path', () => {
  assert.equal(
    objectFile('v1/prod/ml/pod/0/batches/00000000000000000001.ndjson.gz', '01M8M32TSTQ9G0Z8TB3HGSJA0N'),
    'objects/v1/prod/ml/pod/0/batches/00000000000000000001.ndjson.gz@01M8M32TSTQ9G0Z8TB3HGSJA0N',
  );
  assert.equal(metaFile('v1/a.json', 'null'), 'objects/v1/a.json@null.meta.json');
});

test('no key escapes objects/, whatever its segments', () => {
  for (const key of [
    '../../etc/passwd',
    'v1/../../x',
    '/abs/path',
    'v1//double',
    'v1/./dot',
    '..',
    'a\\..\\b',
  ]) {
    const file = objectFile(key, 'v');
    const normalised = posix.normalize(file);
    assert.ok(normalised.startsWith('objects/'), `${key} → ${file}`);
    assert.ok(!file.split('/').some((s) => s === '..' || s === '.' || s === ''), `${key} → ${file}`);
  }
});

test('distinct keys and versions never share a file', () => {
  const pairs: [string, string][] = [
    ['a@b', 'c'],
    ['a', 'b@c'],
    ['a%40b', 'c'],
    ['a/.', 'v'],
    ['a/%2E', 'v'],
    ['a/', 'v'],
    ['a/%', 'v'],
    ['k', 'v.meta.json'],
    ['k', 'v'],
    ['x'.repeat(300), 'v'],
    [`${'x'.repeat(300)}y`, 'v'],
    ['k', '3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY'],
    ['k', '3HL4kqtJlcpXroDTDmJ/rmSpXd3dIbrHY'],
  ];
  const files = pairs.flatMap(([key, version]) => [objectFile(key, version), metaFile(key, version)]);
  assert.equal(new Set(files).size, files.length);
});

test('every path segment stays within file-system limits', () => {
  const file = metaFile(`v1/${'é'.repeat(200)}`, 'v'.repeat(300));
  for (const segment of file.split('/')) assert.ok(Buffer.byteLength(segment) <= 255, segment);
});

test('metadata read back may only name the file of its own key and version', () => {
  const meta = {
    key: 'v1/a.json',
    versionId: 'v1',
    isLatest: true,
    isDeleteMarker: false,
    lastModified: '2025-06-01T00:00:00.000Z',
    size: 1,
    checksumSHA256: null,
    checksumType: null,
    lockMode: null,
    retainUntil: null,
    sha256: null,
  };
  assert.ok(objectMetaSchema.safeParse({ ...meta, file: objectFile(meta.key, meta.versionId) }).success);
  const outside = objectMetaSchema.safeParse({ ...meta, file: '../../secrets' });
  assert.equal(outside.success, false);
  assert.deepEqual(
    outside.error?.issues.map((i) => i.path),
    [['file']],
  );
});
