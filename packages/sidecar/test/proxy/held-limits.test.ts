// A request held for approval is forwarded under the policy in force when the
// approval comes: limits lowered meanwhile bind it as they bind a new request.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { PolicySpecInput } from '@veil/core';
import { type ControllerStandIn, type HeldFixture, startHeldFixture } from '../approvals/controller.ts';
import { call, type SidecarFixture, testPolicy } from '../fixtures/sidecar.ts';

const approvals = {
  rules: [
    {
      name: 'reindex',
      when: { operation: { header: 'x-veil-operation', values: ['reindex'] } },
      approvers: { groups: ['ml-approvers'] },
      holdTimeoutSeconds: 60,
    },
  ],
};
const held = { 'x-veil-operation': 'reindex' };
/** Fails a test whose hold is never opened, rather than hanging the file. */
const WAIT = { timeout: 20_000 };

describe('limits of a policy changed while a request is held', () => {
  let setup: HeldFixture;
  let controller: ControllerStandIn;
  let fixture: SidecarFixture;

  before(async () => {
    setup = await startHeldFixture({ policy: { approvals } });
    ({ controller, fixture } = setup);
  });
  after(() => setup?.close());

  async function apply(overrides: PolicySpecInput): Promise<void> {
    const applied = await fixture.sidecar.store.apply('test', testPolicy([fixture.issuer], overrides));
    assert.ok(applied.ok);
  }

  /** Sends a held request, changes the policy while it waits, approves it: the answer. */
  async function approvedAfter(input: string[], overrides: PolicySpecInput) {
    await apply({ approvals });
    const pending = call(
      `${fixture.url}/v1/embeddings`,
      { model: 'm', input },
      { token: await fixture.token(), headers: held },
    );
    const id = await controller.nextOpened();
    await apply(overrides);
    controller.decide(id, 'approve', 'bob', 'reviewed');
    return pending;
  }

  for (const [what, limits] of [
    ['maxInputsPerRequest', { maxInputsPerRequest: 2 }],
    ['vectorsPerMinute', { vectorsPerMinute: 2 }],
    ['maxBytesPerRequest', { maxBytesPerRequest: 1024 }],
  ] as const) {
    it(`refuses 413, never forwards, what the new ${what} no longer admits`, WAIT, async () => {
      const calls = fixture.upstreamCalls.length;
      const answer = await approvedAfter(['a'.repeat(400), 'b'.repeat(400), 'c'.repeat(400)], {
        approvals,
        limits,
      });
      assert.equal(answer.status, 413, answer.text);
      assert.equal(fixture.upstreamCalls.length, calls);
      const record = fixture.records().at(-1);
      assert.deepEqual([record?.kind, record?.outcome, record?.status], ['request', 'too_large', 413]);
    });
  }

  it('forwards what the new limits still admit', WAIT, async () => {
    const calls = fixture.upstreamCalls.length;
    const answer = await approvedAfter(['a', 'b'], { approvals, limits: { maxInputsPerRequest: 2 } });
    assert.equal(answer.status, 200, answer.text);
    assert.equal(fixture.upstreamCalls.length, calls + 1);
  });
});
