// Long polls on one approval share one reader of it, and one pod holds only so
// many: the API server is read per approval waited on, not per request held.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep, setImmediate as tick } from 'node:timers/promises';
import { ApprovalWaits } from '../../src/controller/approvals/waits.ts';

type Phase = 'Pending' | 'Approved';

/** Waits whose reads the test answers, one by one, in the order they were asked. */
function answeredByTest(maxPerPod = 10) {
  const reads: { name: string; answer: (phase: Phase | undefined | Error) => void }[] = [];
  const waits = new ApprovalWaits<Phase>({
    read: (_namespace, name) =>
      new Promise((resolve, reject) => {
        reads.push({ name, answer: (phase) => (phase instanceof Error ? reject(phase) : resolve(phase)) });
      }),
    settled: (phase) => phase !== 'Pending',
    pollMs: 1,
    maxPerPod,
  });
  /** The reads asked for so far and not answered, by approval name. */
  const open = () => reads.map((read) => read.name);
  /** Answers the oldest open read of `name`. */
  const answer = (name: string, phase: Phase | undefined | Error) => {
    const read = reads.find((r) => r.name === name);
    assert.ok(read, `a read of ${name} is open`);
    reads.splice(reads.indexOf(read), 1);
    read.answer(phase);
  };
  /** Once `count` reads are open. */
  const reading = async (count: number) => {
    while (reads.length < count) await tick();
  };
  return { waits, open, answer, reading };
}

/** Time for reads past the one expected to be asked for, were any. */
const settle = () => sleep(20);
const later = () => performance.now() + 60_000;
const never = () => false;

test('five long polls on one approval are one read at a time, each answered once it is decided', async () => {
  const { waits, open, answer, reading } = answeredByTest();
  const same = Array.from({ length: 5 }, () => waits.wait('ml', 'ea-1', later(), never));
  const other = waits.wait('ml', 'ea-2', later(), never);
  await reading(2);
  // The reads are asked for after the pause; one each, however many wait.
  await settle();
  assert.deepEqual(open().sort(), ['ea-1', 'ea-2']);

  answer('ea-1', 'Pending');
  await reading(2);
  await settle();
  assert.deepEqual(open().sort(), ['ea-1', 'ea-2']);
  answer('ea-1', 'Approved');
  assert.deepEqual(await Promise.all(same), Array(5).fill('Approved'));

  // Gone is answered as gone; its reader ends with its last waiter.
  answer('ea-2', undefined);
  assert.equal(await other, undefined);
  await settle();
  assert.deepEqual(open(), []);
});

test('a wait that is over is answered as the approval stands, while the others go on waiting', async () => {
  const { waits, open, answer, reading } = answeredByTest();
  const short = waits.wait('ml', 'ea-1', performance.now(), never);
  const long = waits.wait('ml', 'ea-1', later(), never);
  await reading(1);
  answer('ea-1', 'Pending');
  assert.equal(await short, 'Pending');
  await reading(1);
  assert.deepEqual(open(), ['ea-1']);
  answer('ea-1', 'Approved');
  assert.equal(await long, 'Approved');
});

test('a read that fails fails each of its waiters; the next long poll reads afresh', async () => {
  const { waits, answer, reading } = answeredByTest();
  const both = [waits.wait('ml', 'ea-1', later(), never), waits.wait('ml', 'ea-1', later(), never)];
  await reading(1);
  answer('ea-1', new Error('the API server is unavailable'));
  for (const waiting of both) await assert.rejects(waiting, /unavailable/);

  const again = waits.wait('ml', 'ea-1', later(), never);
  await reading(1);
  answer('ea-1', 'Approved');
  assert.equal(await again, 'Approved');
});

test('a caller that went away is answered nothing and no longer read for', async () => {
  const { waits, open, answer, reading } = answeredByTest();
  let gone = false;
  const leaving = waits.wait('ml', 'ea-1', later(), () => gone);
  await reading(1);
  gone = true;
  answer('ea-1', 'Pending');
  assert.equal(await leaving, undefined);
  await settle();
  assert.deepEqual(open(), []);
});

test('one pod holds at most maxPerPod long polls at once; another pod is not held back by it', () => {
  const { waits } = answeredByTest(2);
  const first = waits.enter('ml/embed-0');
  const second = waits.enter('ml/embed-0');
  assert.ok(first && second);
  assert.equal(waits.enter('ml/embed-0'), undefined);
  assert.ok(waits.enter('ml/embed-1'));
  first();
  first();
  const third = waits.enter('ml/embed-0');
  assert.ok(third);
  assert.equal(waits.enter('ml/embed-0'), undefined);
});
