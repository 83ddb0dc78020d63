// The evidence commands' bounded concurrent map: pure control flow, driven by
// hand-resolved promises, so the order of events is the test's own.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mapConcurrently } from '../src/evidence/concurrently.ts';

/** A task per item whose settling the test decides, recording which items were started. */
function controlled(count: number) {
  const started: number[] = [];
  const settle = new Map<number, { resolve: (value: number) => void; reject: (error: Error) => void }>();
  const work = (item: number) =>
    new Promise<number>((resolve, reject) => {
      started.push(item);
      settle.set(item, { resolve, reject });
    });
  const items = Array.from({ length: count }, (_, index) => index);
  return { items, started, work, settle: (item: number) => settle.get(item) };
}

/** Lets every promise callback already queued run. */
const drain = () => new Promise((resolve) => setImmediate(resolve));

test('results come back in input order, with at most `limit` tasks at a time', async () => {
  const { items, started, work, settle } = controlled(5);
  const all = mapConcurrently(items, 2, work);
  await drain();
  assert.deepEqual(started, [0, 1]);
  settle(1)?.resolve(10);
  await drain();
  assert.deepEqual(started, [0, 1, 2]);
  for (const item of [0, 2, 3, 4]) {
    settle(item)?.resolve(item * 10);
    await drain();
  }
  assert.deepEqual(await all, [0, 10, 20, 30, 40]);
});

test('a failure rejects only once every started task has settled, and starts no new task', async () => {
  const { items, started, work, settle } = controlled(6);
  let settled = false;
  const all = mapConcurrently(items, 3, work);
  const done = () => {
    settled = true;
  };
  all.then(done, done);
  await drain();
  assert.deepEqual(started, [0, 1, 2]);
  settle(1)?.reject(new Error('first'));
  await drain();
  assert.equal(settled, false, 'rejected while tasks 0 and 2 still ran');
  settle(2)?.reject(new Error('second'));
  await drain();
  assert.equal(settled, false, 'rejected while task 0 still ran');
  settle(0)?.resolve(0);
  await assert.rejects(all, { message: 'first' });
  assert.deepEqual(started, [0, 1, 2]);
});
