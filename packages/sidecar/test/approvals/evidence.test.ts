// Each decision is recorded once per sidecar, however many requests observe it,
// and no observer goes on before that one record is durable.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RecordedDecisions } from '../../src/approvals/evidence.ts';

const key = (approver: string) =>
  RecordedDecisions.key('ml/ea-1', approver, 'approve', '2025-06-01T10:00:00.000Z');

test('a decision being recorded is shared: the second observer waits for the same record', async () => {
  const decisions = new RecordedDecisions();
  let writes = 0;
  let release: () => void = () => undefined;
  const durable = new Promise<void>((resolve) => {
    release = resolve;
  });
  const write = async () => {
    writes++;
    await durable;
  };
  let secondDone = false;
  const first = decisions.once(key('bob'), write);
  const second = decisions.once(key('bob'), write).then(() => {
    secondDone = true;
  });
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(secondDone, false, 'not before the record is durable');
  release();
  await Promise.all([first, second]);
  assert.equal(writes, 1);
  await decisions.once(key('bob'), write);
  assert.equal(writes, 1, 'recorded once, then known');
  await decisions.once(key('carol'), write);
  assert.equal(writes, 2, 'another approver is another decision');
});

test('a record that failed is tried again by the next observer, and both observers of it fail', async () => {
  const decisions = new RecordedDecisions();
  let fail = true;
  let writes = 0;
  const write = async () => {
    writes++;
    if (fail) throw new Error('spool full');
  };
  const first = decisions.once(key('bob'), write);
  const second = decisions.once(key('bob'), write);
  await assert.rejects(first, /spool full/);
  await assert.rejects(second, /spool full/);
  fail = false;
  await decisions.once(key('bob'), write);
  assert.equal(writes, 2);
});

test('past its limit the oldest decisions are forgotten, and would be recorded again', async () => {
  const decisions = new RecordedDecisions(2);
  let writes = 0;
  const write = async () => {
    writes++;
  };
  for (const approver of ['a', 'b', 'c']) await decisions.once(key(approver), write);
  assert.equal(writes, 3);
  await decisions.once(key('c'), write);
  await decisions.once(key('b'), write);
  assert.equal(writes, 3);
  await decisions.once(key('a'), write);
  assert.equal(writes, 4);
});
