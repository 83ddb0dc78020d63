import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type AuditRecord, auditRecordSchema } from '../../src/evidence/record.ts';
import { effectiveRecords, matchCompletions } from '../../src/evidence/requests.ts';
import { record } from './fixtures.ts';

const idOf = (seq: number) => `01HZZZZZZZZZZZZZZZZZZZZ${String(seq).padStart(3, '0')}`;

function at(stream: string, seq: number, change: Partial<AuditRecord> = {}): AuditRecord {
  return auditRecordSchema.parse({ ...record(stream, seq), id: idOf(seq), ...change });
}

const part = { outcome: 'incomplete', status: null, vectors: undefined } as const;

test('a completed first part is left out; an uncompleted one stays, in order', () => {
  const records = [
    at('a', 0),
    at('a', 1, part),
    at('a', 2, part),
    at('a', 3, { completes: idOf(1) }),
    at('a', 4, { kind: 'approval.requested', outcome: 'held', status: null }),
  ];
  assert.deepEqual(
    effectiveRecords(records).map((r) => [r.seq, r.outcome]),
    [
      [0, 'allowed'],
      [2, 'incomplete'],
      [3, 'allowed'],
      [4, 'held'],
    ],
  );
});

test('parts are paired within their stream, whatever the order records come in', () => {
  // The same ids in two streams: each completion belongs to its own stream.
  const records = [
    at('b', 5, { completes: idOf(1) }),
    at('a', 3, { completes: idOf(1) }),
    at('a', 1, part),
    at('b', 1, part),
    at('c', 1, part),
  ];
  const { completedBy, mismatched } = matchCompletions(records);
  assert.deepEqual(mismatched, []);
  assert.deepEqual([...completedBy].map(([first, full]) => [first.stream, first.seq, full.seq]).sort(), [
    ['a', 1, 3],
    ['b', 1, 5],
  ]);
  assert.deepEqual(
    effectiveRecords(records).map((r) => `${r.stream}:${r.seq}`),
    ['b:5', 'a:3', 'c:1'],
  );
});

test('a completion of nothing it may complete is mismatched and completes nothing', () => {
  const records = [
    at('a', 0),
    at('a', 1, part),
    at('a', 2, { completes: idOf(0) }),
    at('a', 3, { completes: idOf(8) }),
    at('a', 4, { ...part, completes: idOf(1) }),
    at('a', 5, { completes: idOf(1) }),
    at('a', 6, { completes: idOf(1) }),
    at('a', 7, { completes: idOf(9) }),
    at('a', 9, part),
    at('b', 2, { completes: idOf(1) }),
  ];
  const { completedBy, mismatched } = matchCompletions(records);
  assert.deepEqual(
    mismatched.map(({ record, reason }) => [`${record.stream}:${record.seq}`, reason]),
    [
      ['a:2', 'seq 0 is no incomplete request record'],
      ['a:3', 'no record of its stream has that id'],
      ['a:4', 'an incomplete request record completes nothing'],
      ['a:6', 'seq 1 is completed already, by seq 5'],
      ['a:7', 'seq 9 does not come before it'],
      ['b:2', 'no record of its stream has that id'],
    ],
  );
  assert.deepEqual(
    [...completedBy].map(([first, full]) => [first.seq, full.seq]),
    [[1, 5]],
  );
  // What counting sees: seq 1 once, through seq 5; seq 9 stays an incomplete request.
  assert.deepEqual(
    effectiveRecords(records).map((r) => `${r.stream}:${r.seq}`),
    ['a:0', 'a:2', 'a:3', 'a:4', 'a:5', 'a:6', 'a:7', 'a:9', 'b:2'],
  );
});
