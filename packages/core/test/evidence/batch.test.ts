import assert from 'node:assert/strict';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { BatchBuilder, decodeBatch, encodeBatch } from '../../src/evidence/batch.ts';
import { sha256Hex } from '../../src/evidence/hash.ts';
import { merkleRootHex } from '../../src/evidence/merkle.ts';
import { encodeRecordLine } from '../../src/evidence/record.ts';
import { record } from './fixtures.ts';

const stream = 'prod/ml/uid/0';
const lines = [4, 5, 6].map((seq) => encodeRecordLine(record(stream, seq)));

test('a batch describes its records: range, times, object digest and Merkle root', () => {
  const batch = encodeBatch(lines);
  assert.equal(batch.stream, stream);
  assert.equal(batch.content.sha256, sha256Hex(batch.bytes));
  assert.equal(batch.content.records, 3);
  assert.equal(batch.content.firstSeq, 4);
  assert.equal(batch.content.lastSeq, 6);
  assert.equal(batch.content.firstTime, JSON.parse(lines[0] as string).time);
  assert.equal(batch.content.lastTime, JSON.parse(lines[2] as string).time);
  assert.equal(batch.content.merkleRoot, merkleRootHex(lines.map((l) => Buffer.from(l))));
});

test('batch times are the earliest and latest record, not the first and last line', () => {
  const early = encodeRecordLine({ ...record(stream, 7), time: '2020-01-01T00:00:00.000Z' });
  const batch = encodeBatch([...lines, early]);
  assert.equal(batch.content.firstTime, '2020-01-01T00:00:00.000Z');
  assert.equal(batch.content.lastTime, JSON.parse(lines[2] as string).time);
});

test('decoding returns the exact line bytes and the parsed records', () => {
  const decoded = decodeBatch(encodeBatch(lines).bytes);
  assert.ok(decoded.ok);
  assert.deepEqual(
    decoded.lines.map((l) => Buffer.from(l.bytes).toString()),
    lines,
  );
  assert.deepEqual(
    decoded.lines.map((l) => (l.ok ? l.record.seq : -1)),
    [4, 5, 6],
  );
});

test('malformed lines are reported in place, the others still decode', () => {
  const invalidUtf8 = Buffer.from([0xc3, 0x28]);
  const bytes = Buffer.concat([
    Buffer.from(`${lines[0]}\n{"broken"\n\n`),
    invalidUtf8,
    Buffer.from(`\n${lines[1]}`),
  ]);
  const decoded = decodeBatch(gzipSync(bytes));
  assert.ok(decoded.ok);
  assert.deepEqual(
    decoded.lines.map((l) => (l.ok ? 'ok' : l.error)),
    ['ok', 'not JSON', 'empty line', 'not UTF-8', 'ok'],
  );
  // The last line had no newline: it is kept, byte for byte.
  assert.equal(Buffer.from(decoded.lines[4]?.bytes ?? []).toString(), lines[1]);
});

test('a line holding a carriage return is malformed, even where JSON allows one', () => {
  // CRLF line ends, and a carriage return as JSON whitespace inside the line.
  const bytes = Buffer.from(`${lines[0]}\r\n${lines[1]?.replace('{', '{\r')}\n${lines[2]}\n`);
  const decoded = decodeBatch(gzipSync(bytes));
  assert.ok(decoded.ok);
  assert.deepEqual(
    decoded.lines.map((l) => (l.ok ? 'ok' : l.error)),
    ['a carriage return in the line', 'a carriage return in the line', 'ok'],
  );
});

test("a line starting with a byte order mark is not its record's canonical encoding", () => {
  const bom = Buffer.from([0xef, 0xbb, 0xbf]);
  const line = Buffer.concat([bom, Buffer.from(lines[0] ?? '')]);
  const decoded = decodeBatch(gzipSync(Buffer.concat([line, Buffer.from('\n')])));
  assert.ok(decoded.ok);
  assert.deepEqual(
    decoded.lines.map((l) => (l.ok ? 'ok' : l.error)),
    ['not JSON'],
  );
});

test('bytes that are not gzip, or inflate past the limit, are refused', () => {
  assert.deepEqual(decodeBatch(Buffer.from(lines[0] as string)), { ok: false, error: 'not gzip' });
  const bomb = gzipSync(Buffer.alloc(1 << 20, 0x20));
  assert.deepEqual(decodeBatch(bomb, { maxBytes: 1024 }), {
    ok: false,
    error: 'larger than 1024 bytes uncompressed',
  });
});

test('only consecutive records of one stream make a batch', () => {
  assert.throws(() => encodeBatch([]), RangeError);
  assert.throws(() => encodeBatch([lines[0], lines[2]] as string[]), /seq 6 where 5/);
  const other = encodeRecordLine(record('prod/ml/uid/1', 5));
  assert.throws(() => encodeBatch([lines[0] as string, other]), /one stream/);
  assert.throws(() => encodeBatch([`${lines[0]}\n${lines[1]}`]), /line break/);
});

test('a line not as encodeRecordLine writes it is refused, not described', () => {
  const fields = JSON.parse(lines[0] as string) as Record<string, unknown>;
  const reordered = JSON.stringify({ seq: fields.seq, ...fields });
  assert.throws(() => encodeBatch([reordered]), /as encodeRecordLine writes it/);
  assert.throws(() => encodeBatch([(lines[0] as string).replace('"seq":4', '"seq":-4')]), /encodeRecordLine/);
  assert.throws(
    () => encodeBatch([(lines[0] as string).replace(/"time":"[^"]*"/, '"time":"yesterday"')]),
    /encodeRecordLine/,
  );
  assert.throws(
    () => encodeBatch([(lines[0] as string).replace('"seq":4', '"seq":90071992547409930')]),
    /encodeRecordLine/,
  );
  assert.throws(() => encodeBatch(['not a record']), /encodeRecordLine/);
});

test('a stream id is read whole: escaped, non-ASCII, or longer than the usual head of a line', () => {
  for (const id of ['prod/"quoted"\\back/0', 'prod/é✓/0', `prod/${'x'.repeat(400)}/0`]) {
    const batch = encodeBatch([4, 5].map((seq) => encodeRecordLine(record(id, seq))));
    assert.equal(batch.stream, id);
    assert.equal(batch.content.lastSeq, 5);
  }
});

test('a batch built a line at a time stops at another stream and matches one encoded at once', () => {
  const builder = new BatchBuilder();
  for (const line of lines) assert.equal(builder.add(Buffer.from(line)), true);
  assert.equal(builder.add(Buffer.from(encodeRecordLine(record('prod/ml/uid/1', 7)))), false);
  assert.equal(builder.records, 3);
  assert.equal(builder.text().toString(), `${lines.join('\n')}\n`);
  const bytes = gzipSync(builder.text());
  const built = builder.finish(bytes);
  const once = encodeBatch(lines);
  assert.deepEqual({ ...built.content, sha256: once.content.sha256 }, once.content);
  assert.equal(built.content.sha256, sha256Hex(bytes));
  assert.equal(built.stream, stream);
  assert.throws(() => new BatchBuilder().finish(bytes), /at least one record/);
});
