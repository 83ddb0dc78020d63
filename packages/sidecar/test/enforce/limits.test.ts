import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VectorRateLimiter } from '../../src/enforce/limits.ts';

/** A clock the test moves by hand. */
function manualClock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let time = start;
  return { now: () => time, advance: (ms) => (time += ms) };
}

describe('VectorRateLimiter', () => {
  it('lets a caller burst up to the whole minute, then refuses', () => {
    const clock = manualClock();
    const limiter = new VectorRateLimiter(60, { now: clock.now });
    assert.deepEqual(limiter.take('alice', 60), { ok: true });
    assert.deepEqual(limiter.take('alice', 1), { ok: false, retryAfterSeconds: 1 });
  });

  it('refills continuously and says how long until the request would pass', () => {
    const clock = manualClock();
    const limiter = new VectorRateLimiter(6, { now: clock.now });
    assert.equal(limiter.take('alice', 6).ok, true);
    // One vector every ten seconds.
    assert.deepEqual(limiter.take('alice', 3), { ok: false, retryAfterSeconds: 30 });
    clock.advance(10_000);
    assert.deepEqual(limiter.take('alice', 3), { ok: false, retryAfterSeconds: 20 });
    assert.deepEqual(limiter.take('alice', 1), { ok: true });
    clock.advance(29_999);
    assert.deepEqual(limiter.take('alice', 3), { ok: false, retryAfterSeconds: 1 });
    clock.advance(1);
    assert.deepEqual(limiter.take('alice', 3), { ok: true });
  });

  it('never refills past the minute budget', () => {
    const clock = manualClock();
    const limiter = new VectorRateLimiter(10, { now: clock.now });
    limiter.take('alice', 1);
    clock.advance(3_600_000);
    assert.equal(limiter.take('alice', 10).ok, true);
    assert.equal(limiter.take('alice', 1).ok, false);
  });

  it('keeps a bucket per identity', () => {
    const clock = manualClock();
    const limiter = new VectorRateLimiter(5, { now: clock.now });
    assert.equal(limiter.take('alice', 5).ok, true);
    assert.equal(limiter.take('alice', 1).ok, false);
    assert.equal(limiter.take('bob', 5).ok, true);
  });

  it('takes back vectors given back, never past the minute budget', () => {
    const clock = manualClock();
    const limiter = new VectorRateLimiter(10, { now: clock.now });
    assert.deepEqual(limiter.take('alice', 8), { ok: true });
    limiter.giveBack('alice', 5);
    assert.deepEqual(limiter.take('alice', 7), { ok: true });
    limiter.giveBack('alice', 100);
    assert.deepEqual(limiter.take('alice', 10), { ok: true });
    assert.equal(limiter.take('alice', 1).ok, false);
  });

  it('takes nothing from a refused request', () => {
    const clock = manualClock();
    const limiter = new VectorRateLimiter(10, { now: clock.now });
    assert.equal(limiter.take('alice', 8).ok, true);
    assert.equal(limiter.take('alice', 5).ok, false);
    assert.equal(limiter.take('alice', 2).ok, true);
  });

  it('never lets a request larger than the whole budget through', () => {
    const clock = manualClock();
    const limiter = new VectorRateLimiter(10, { now: clock.now });
    assert.deepEqual(limiter.take('alice', 11), { ok: false, retryAfterSeconds: 60 });
    clock.advance(3_600_000);
    assert.equal(limiter.take('alice', 11).ok, false);
  });

  it('forgets only idle, full buckets when the identity table is full', () => {
    const clock = manualClock();
    const limiter = new VectorRateLimiter(10, { now: clock.now, maxIdentities: 2 });
    limiter.take('alice', 10);
    clock.advance(60_000);
    limiter.take('bob', 10);
    // Table full: alice has been idle a minute (full again) and goes; bob stays, spent.
    limiter.take('carol', 1);
    assert.equal(limiter.take('bob', 1).ok, false);
    assert.equal(limiter.take('alice', 10).ok, true);
  });

  it('drops the least recently used caller when every bucket is in use, so the table stays bounded', () => {
    const clock = manualClock();
    const limiter = new VectorRateLimiter(10, { now: clock.now, maxIdentities: 2 });
    limiter.take('alice', 10);
    limiter.take('bob', 10);
    // A refused request is a use too: bob is now the least recently used.
    assert.equal(limiter.take('alice', 1).ok, false);
    limiter.take('carol', 1);
    assert.equal(limiter.take('alice', 1).ok, false, 'alice keeps her spent bucket');
    assert.equal(limiter.take('bob', 10).ok, true, 'bob was forgotten to make room for carol');
  });

  it('keeps every caller at a new rate, capped at the new budget', () => {
    const clock = manualClock();
    const limiter = new VectorRateLimiter(60, { now: clock.now });
    limiter.take('alice', 60);
    limiter.take('bob', 10);
    limiter.setRate(30);
    assert.equal(limiter.take('alice', 1).ok, false, 'a lower rate is no fresh budget');
    assert.equal(limiter.take('bob', 30).ok, true, 'what bob had left, capped at the new budget');
    assert.equal(limiter.take('bob', 1).ok, false);
    // Back to the first rate: still what was spent, refilled at the rate now in force.
    limiter.setRate(60);
    assert.equal(limiter.take('alice', 1).ok, false);
    clock.advance(1_000);
    assert.deepEqual(limiter.take('alice', 1), { ok: true });
    assert.equal(limiter.take('carol', 60).ok, true, 'a new caller gets the new budget');
  });

  it('refills the time before a rate change at the rate it passed under', () => {
    const clock = manualClock();
    const limiter = new VectorRateLimiter(60, { now: clock.now });
    limiter.take('alice', 60);
    clock.advance(10_000);
    limiter.setRate(600);
    // Ten seconds at one vector a second: 10, not the new rate's 100.
    assert.equal(limiter.take('alice', 11).ok, false);
    assert.equal(limiter.take('alice', 10).ok, true);
  });
});
