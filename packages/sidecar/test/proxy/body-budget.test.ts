import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BodyBudget } from '../../src/proxy/body-budget.ts';

describe('BodyBudget', () => {
  it('refuses bytes that would pass the capacity with the others, and takes none of them', () => {
    const budget = new BodyBudget(100);
    const first = budget.lease();
    const second = budget.lease();
    assert.equal(first.take(60), true);
    assert.equal(second.take(50), false);
    assert.equal(budget.usedBytes, 60);
    assert.equal(second.take(40), true);
    assert.equal(second.take(1), false);
    assert.equal(budget.usedBytes, 100);
  });

  it('gives back what a request held once it is answered, once', () => {
    const budget = new BodyBudget(100);
    const first = budget.lease();
    const second = budget.lease();
    first.take(70);
    second.take(30);
    first.release();
    first.release();
    assert.equal(budget.usedBytes, 30);
    assert.equal(budget.lease().take(70), true);
  });

  it('lets a request alone pass the capacity, so that no body the policy allows is refused for good', () => {
    const budget = new BodyBudget(100);
    const alone = budget.lease();
    assert.equal(alone.take(80), true);
    assert.equal(alone.take(80), true, 'it holds all there is');
    assert.equal(budget.lease().take(1), false, 'while it does, nobody else reads');
    alone.release();
    assert.equal(budget.usedBytes, 0);
  });

  it('names the capacity in its refusal', () => {
    assert.match(new BodyBudget(4096).lease().refusal().message, /4096 bytes in all/);
  });
});
