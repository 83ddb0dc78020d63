import assert from 'node:assert/strict';
import { test } from 'node:test';
import { z } from 'zod';
import { sha256Hex } from '../../src/evidence/hash.ts';
import {
  auditRecordSchema,
  encodeRecordLine,
  maxRecordNesting,
  parseRecordLine,
  vectorsDigest,
} from '../../src/evidence/record.ts';
import { fullRecord, record } from './fixtures.ts';

const stream = 'prod/ml/uid/0';

test('equal records encode to equal bytes whatever their key order', () => {
  const input = record(stream, 3);
  const reversed = Object.fromEntries(Object.entries(input).reverse()) as typeof input;
  assert.equal(encodeRecordLine(reversed), encodeRecordLine(input));
  assert.ok(encodeRecordLine(input).startsWith('{"id":'));
});

test('encoding fills defaults and a line parses back to the same record', () => {
  const line = encodeRecordLine(record(stream, 0));
  const parsed = parseRecordLine(line);
  assert.ok(parsed.ok);
  assert.equal(parsed.record.kind, 'request');
  assert.deepEqual(parsed.record.masking, []);
  assert.equal(JSON.stringify(parsed.record), line);
});

test('an invalid record is refused rather than recorded', () => {
  assert.throws(() => encodeRecordLine({ ...record(stream, 0), outcome: 'fine' as 'allowed' }));
  assert.throws(() => encodeRecordLine({ ...record(stream, -1) }));
  assert.throws(() => encodeRecordLine({ ...record(stream, 0), time: '2025-06-01T12:00:00Z' }));
  assert.throws(() => encodeRecordLine({ ...record(stream, 0), rawVectors: [[1]] } as never));
});

test('every bound of the record schema is enforced', () => {
  const valid = record(stream, 0);
  const action = { rule: 'pii', detector: 'email', count: 1, field: 'input', operator: 'redact' } as const;
  const invalid: Record<string, object> = {
    'empty route': { route: '' },
    'route of 513 characters': { route: 'r'.repeat(513) },
    'empty group': { identity: { issuer: 'https://idp', subject: 'alice', groups: [''] } },
    'seq not whole': { seq: 1.5 },
    'seq beyond a safe integer': { seq: 2 ** 53 },
    'status below 100': { status: 99 },
    'status above 599': { status: 600 },
    'negative input count': { inputCount: -1 },
    'masking count of 0': { masking: [{ ...action, count: 0 }] },
    'negative latency': { latency: { totalMs: -0.1 } },
    'latency beyond a day': { latency: { totalMs: 86_400_001 } },
    'masked input over 64 KiB': { inputs: [{ masked: 'x'.repeat(65_537) }] },
    'empty error': { error: '' },
    'error of 257 characters': { error: 'e'.repeat(257) },
    'vector dimensions not whole': { vectors: { count: 1, dimensions: 0.5, digest: '0'.repeat(64) } },
  };
  for (const [what, change] of Object.entries(invalid)) {
    assert.throws(() => encodeRecordLine({ ...valid, ...change }), Error, what);
  }
  const atTheBounds = {
    ...valid,
    route: 'r'.repeat(512),
    seq: Number.MAX_SAFE_INTEGER,
    status: 599,
    latency: { totalMs: 86_400_000, authMs: 0 },
    inputs: [{ masked: '' }, { masked: 'x'.repeat(65_536) }],
    error: 'e'.repeat(256),
  };
  assert.equal(parseRecordLine(encodeRecordLine(atTheBounds)).ok, true);
});

test('records carry masking actions and approvals, never the masked values', () => {
  const line = encodeRecordLine(fullRecord(stream, 1));
  const parsed = auditRecordSchema.parse(JSON.parse(line));
  assert.equal(parsed.masking[0]?.count, 2);
  assert.equal(parsed.approval?.approvers[0]?.subject, 'bob');
  assert.deepEqual(parsed.inputs, [{ digest: 'hmac-sha256:00' }, { masked: 'mail [EMAIL]' }]);
});

test('a parse error names the fields, not their values', () => {
  const secret = 'sk-live-0123456789';
  const result = parseRecordLine(
    JSON.stringify({ ...record(stream, 0), model: 42, route: secret, outcome: secret }),
  );
  assert.equal(result.ok, false);
  if (result.ok) return;
  assert.match(result.error, /model/);
  assert.match(result.error, /outcome/);
  assert.doesNotMatch(result.error, /sk-live/);
  assert.deepEqual(parseRecordLine('{"id"'), { ok: false, error: 'not JSON' });
});

test('a line is a record only in the canonical encoding of that record', () => {
  const line = encodeRecordLine(record(stream, 0));
  assert.equal(parseRecordLine(line).ok, true);
  assert.equal(parseRecordLine(encodeRecordLine(fullRecord(stream, 1))).ok, true);
  const fields = JSON.parse(line) as Record<string, unknown>;
  const respellings = {
    // JSON.parse keeps the last of two members, other parsers the first or refuse.
    'a duplicate member': line.replace('"outcome":"allowed"', '"outcome":"denied","outcome":"allowed"'),
    'an escape where none is needed': line.replace('"route":"/v1/', '"route":"\\/v1/'),
    'members out of order': JSON.stringify({ seq: fields.seq, ...fields }),
    'whitespace between tokens': line.replace('{"id":', '{ "id":'),
    'a default left out': line.replace(',"masking":[]', ''),
  };
  for (const [what, respelled] of Object.entries(respellings)) {
    assert.notEqual(respelled, line, what);
    assert.deepEqual(
      parseRecordLine(respelled),
      { ok: false, error: 'not the canonical encoding of its record: other parsers may read it otherwise' },
      what,
    );
  }
});

/** How deep a JSON Schema's objects and arrays nest, following every property, item and alternative. */
function schemaDepth(schema: unknown): number {
  if (typeof schema !== 'object' || schema === null) return 0;
  const node = schema as Record<string, unknown>;
  const nested = [
    ...Object.values((node.properties as Record<string, unknown> | undefined) ?? {}),
    node.items,
    ...((node.anyOf as unknown[] | undefined) ?? []),
    ...((node.oneOf as unknown[] | undefined) ?? []),
  ];
  const own = node.type === 'object' || node.type === 'array' ? 1 : 0;
  return own + Math.max(0, ...nested.map(schemaDepth));
}

test('a line nested deeper than any record is refused before it is parsed, brackets in strings aside', () => {
  // The limit stays above the deepest record the schema allows.
  assert.ok(schemaDepth(z.toJSONSchema(auditRecordSchema)) < maxRecordNesting);
  const deep = `${'['.repeat(maxRecordNesting + 1)}${']'.repeat(maxRecordNesting + 1)}`;
  assert.deepEqual(parseRecordLine(deep), {
    ok: false,
    error: `nested deeper than ${maxRecordNesting} levels: no record is`,
  });
  // Millions of brackets are refused as quickly as a few: JSON.parse of them would exhaust the heap.
  assert.equal(parseRecordLine('['.repeat(1_000_000)).ok, false);
  const bracketed = '{[\"'.repeat(50);
  const full = fullRecord(stream, 1);
  const line = encodeRecordLine({ ...full, inputs: [{ masked: bracketed }], error: '\\"[[[[[[[[[[' });
  assert.equal(parseRecordLine(line).ok, true);
});

test('the vectors digest is SHA-256 over float32 little-endian bytes, in order', () => {
  // 1.0f is 00 00 80 3f; -2.0f is 00 00 00 c0.
  const bytes = Buffer.from('0000803f000000c0', 'hex');
  const expected = sha256Hex(bytes);
  assert.equal(vectorsDigest([[1, -2]]), expected);
  assert.equal(vectorsDigest([new Float32Array([1]), [-2]]), expected);
  assert.notEqual(vectorsDigest([[-2, 1]]), expected);
});

test('the vectors digest is the same however many vectors and dimensions there are', () => {
  const reference = (vectors: number[][]) => {
    const bytes = Buffer.alloc(4 * vectors.reduce((sum, vector) => sum + vector.length, 0));
    let at = 0;
    for (const value of vectors.flat()) at = bytes.writeFloatLE(value, at);
    return sha256Hex(bytes);
  };
  const vector = (dimensions: number, seed: number) =>
    Array.from({ length: dimensions }, (_, i) => Math.sin(seed * 7919 + i) * 3);
  const cases = [
    [],
    [vector(384, 1)],
    Array.from({ length: 40 }, (_, n) => vector(3072, n)),
    [vector(10, 1), vector(70_000, 2), vector(10, 3)],
  ];
  for (const vectors of cases) {
    assert.equal(vectorsDigest(vectors), reference(vectors), `${vectors.length} vectors`);
  }
});
