import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backoffDelay } from '../../src/audit/backoff.ts';

const options = { baseMs: 100, capMs: 1_000 };

test('the step doubles per failure up to the cap, and jitter keeps each delay in its upper half', () => {
  const steps = [1, 2, 3, 4, 5, 9].map((failures) => backoffDelay(failures, options, () => 1));
  assert.deepEqual(steps, [100, 200, 400, 800, 1_000, 1_000]);
  const lowest = [1, 2, 3, 4, 5, 9].map((failures) => backoffDelay(failures, options, () => 0));
  assert.deepEqual(lowest, [50, 100, 200, 400, 500, 500]);
});

test('two sidecars failing together retry apart', () => {
  const values = [0.1, 0.9];
  const delays = values.map((value) => backoffDelay(3, options, () => value));
  assert.notEqual(delays[0], delays[1]);
});
