import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { backoffDelay } from '../../src/controller/backoff.ts';
import { Limiter } from '../../src/controller/limiter.ts';

test('no more than the limit run at once, and every task runs', async () => {
  const limiter = new Limiter(3);
  let running = 0;
  let most = 0;
  const results = await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      limiter
        .run(async () => {
          running++;
          most = Math.max(most, running);
          await sleep(1 + (i % 4));
          running--;
          if (i === 7) throw new Error('seven');
          return i;
        })
        .catch((error: Error) => error.message),
    ),
  );
  assert.equal(most, 3);
  assert.equal(results[7], 'seven');
  assert.deepEqual(results.filter((r) => typeof r === 'number').length, 19);
});

test('backoff grows to its ceiling and stays within half of it and all of it', () => {
  const options = { initialMs: 100, maxMs: 1000 };
  for (const [attempt, ceiling] of [
    [0, 100],
    [1, 200],
    [3, 800],
    [4, 1000],
    [60, 1000],
  ] as const) {
    for (let i = 0; i < 50; i++) {
      const delay = backoffDelay(attempt, options);
      assert.ok(delay >= ceiling / 2 && delay <= ceiling, `${attempt}: ${delay}`);
    }
  }
});
