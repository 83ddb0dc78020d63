// A sweep goes through every approval: one whose expiry or deletion fails
// unexpectedly is reported and left for the next sweep, and the rest still go.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type SweepOutcome, sweepEach } from '../../src/controller/approvals/sweep.ts';

test('one item whose turn fails is counted and reported; the items after it still get theirs', async () => {
  const outcomes: Record<string, SweepOutcome | Error> = {
    a: 'expired',
    b: new Error('the API server answered 500'),
    c: 'removed',
    d: new Error('re-read failed'),
    e: 'expired',
    f: 'kept',
  };
  const visited: string[] = [];
  const reported: [string, string][] = [];
  const counts = await sweepEach(
    Object.keys(outcomes),
    async (item) => {
      visited.push(item);
      const outcome = outcomes[item];
      if (outcome instanceof Error) throw outcome;
      return outcome ?? 'kept';
    },
    (item, error) => reported.push([item, (error as Error).message]),
  );
  assert.deepEqual(visited, ['a', 'b', 'c', 'd', 'e', 'f']);
  assert.deepEqual(counts, { expired: 2, removed: 1, failed: 2 });
  assert.deepEqual(reported, [
    ['b', 'the API server answered 500'],
    ['d', 're-read failed'],
  ]);
});
