import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeBatch } from '../../src/evidence/batch.ts';
import { sha256Hex } from '../../src/evidence/hash.ts';
import { generateSigningKey } from '../../src/evidence/keys.ts';
import {
  batchKey,
  buildBatchManifest,
  buildClose,
  buildGenesis,
  manifestKey,
  manifestSchema,
  parseEvidenceKey,
  parseStreamId,
  streamId,
  streamPrefix,
} from '../../src/evidence/manifest.ts';
import { encodeRecordLine } from '../../src/evidence/record.ts';
import { canonicalJson, verifyManifestSignature } from '../../src/evidence/signing.ts';
import { record, ref } from './fixtures.ts';

const createdAt = new Date('2025-06-01T00:00:00.000Z');

test('object keys follow the v1 layout with 20-digit sequence numbers', () => {
  const prefix = streamPrefix(ref);
  assert.equal(prefix, 'v1/prod-eu/ml/8a1f0c2e-4b7d-4f7e-9d3c-2b1e6f5a9c10/0/');
  assert.equal(batchKey(prefix, 1), `${prefix}batches/00000000000000000001.ndjson.gz`);
  assert.equal(manifestKey(prefix, 42), `${prefix}manifests/00000000000000000042.json`);
  assert.throws(() => manifestKey(prefix, -1), RangeError);
  assert.throws(() => streamPrefix({ ...ref, namespace: '../x' }), RangeError);
  assert.throws(() => streamPrefix({ ...ref, incarnation: '' }), RangeError);
});

test('stream names parse back into their parts; names streamId would not build do not', () => {
  assert.deepEqual(parseStreamId(streamId(ref)), ref);
  const name = streamId(ref);
  for (const stream of [
    '',
    name.split('/').slice(1).join('/'),
    `${name}/extra`,
    name.replace(ref.namespace, '..'),
    `/${name}`,
  ]) {
    assert.equal(parseStreamId(stream), undefined, stream);
  }
});

test('evidence keys parse back; keys outside the layout do not', () => {
  const prefix = streamPrefix(ref);
  assert.deepEqual(parseEvidenceKey(batchKey(prefix, 7)), {
    prefix,
    stream: streamId(ref),
    kind: 'batch',
    seq: 7,
  });
  assert.deepEqual(parseEvidenceKey(manifestKey(prefix, 0)), {
    prefix,
    stream: streamId(ref),
    kind: 'manifest',
    seq: 0,
  });
  for (const key of [
    `${prefix}manifests/1.json`,
    `${prefix}batches/00000000000000000001.json`,
    `${prefix}extra/manifests/00000000000000000001.json`,
    'v2/a/b/c/d/manifests/00000000000000000001.json',
    'v1/a/b/../d/manifests/00000000000000000001.json',
    'v1/a/b/c/d/manifests/99999999999999999999.json',
  ]) {
    assert.equal(parseEvidenceKey(key), null, key);
  }
});

test('a chain runs genesis, batches, close; each manifest links the stored bytes of the one before', () => {
  const key = generateSigningKey();
  const prefix = streamPrefix(ref);
  const genesis = buildGenesis({ stream: ref, signingKey: key, createdAt });
  const lines = [0, 1].map((seq) => encodeRecordLine(record(streamId(ref), seq)));
  const batch = encodeBatch(lines);
  const first = buildBatchManifest({ stream: ref, signingKey: key, createdAt, prev: genesis, batch });
  const close = buildClose({ stream: ref, signingKey: key, createdAt, prev: first, lastSeq: 1 });

  assert.equal(genesis.key, manifestKey(prefix, 0));
  assert.deepEqual(genesis.manifest, {
    format: 'veil.manifest/v1',
    stream: streamId(ref),
    key: genesis.key,
    createdAt: '2025-06-01T00:00:00.000Z',
    keyId: key.keyId,
    kind: 'genesis',
    seq: 0,
    prev: null,
    publicKey: key.publicJwk,
    signature: genesis.manifest.signature,
  });
  assert.equal(first.manifest.seq, 1);
  assert.deepEqual(first.manifest.prev, { key: genesis.key, sha256: sha256Hex(genesis.bytes) });
  assert.equal(first.manifest.kind === 'batch' && first.manifest.batch.key, batchKey(prefix, 1));
  assert.equal(first.manifest.kind === 'batch' && first.manifest.batch.merkleRoot, batch.content.merkleRoot);
  assert.equal(close.manifest.kind === 'close' && close.manifest.lastSeq, 1);
  assert.deepEqual(close.manifest.prev, { key: first.key, sha256: first.sha256 });

  for (const stored of [genesis, first, close]) {
    assert.ok(verifyManifestSignature(stored.manifest, key.publicJwk), stored.key);
    // Stored bytes are the canonical JSON of the manifest, and parse back under the schema.
    assert.equal(Buffer.from(stored.bytes).toString(), canonicalJson(stored.manifest));
    assert.deepEqual(manifestSchema.parse(JSON.parse(Buffer.from(stored.bytes).toString())), stored.manifest);
  }
});

test('the signature binds a manifest to its object key', () => {
  const key = generateSigningKey();
  const genesis = buildGenesis({ stream: ref, signingKey: key, createdAt });
  const moved = { ...genesis.manifest, key: manifestKey(streamPrefix({ ...ref, incarnation: '1' }), 0) };
  assert.equal(verifyManifestSignature(moved, key.publicJwk), false);
});

test('builders refuse what would make invalid evidence', () => {
  const key = generateSigningKey();
  const genesis = buildGenesis({ stream: ref, signingKey: key, createdAt });
  const close = buildClose({ stream: ref, signingKey: key, createdAt, prev: genesis, lastSeq: null });
  assert.throws(
    () => buildClose({ stream: ref, signingKey: key, createdAt, prev: close, lastSeq: null }),
    /closed/,
  );
  const foreign = encodeBatch([encodeRecordLine(record('other/ml/uid/0', 0))]);
  assert.throws(
    () => buildBatchManifest({ stream: ref, signingKey: key, createdAt, prev: genesis, batch: foreign }),
    /another stream/,
  );
});
