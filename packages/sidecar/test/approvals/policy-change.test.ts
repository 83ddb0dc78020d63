// A hold for approval lasts minutes, and the policy can change meanwhile: the
// request is forwarded only if the policy in force when the approval comes
// still admits the caller and its size, and masked as that policy says.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { PolicySpecInput } from '@veil/core';
import { call, type SidecarFixture, testPolicy } from '../fixtures/sidecar.ts';
import { type ControllerStandIn, type HeldFixture, startHeldFixture } from './controller.ts';

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
const secret = 'customer jane.doe@example.com asked about invoice 4411';
const held = { 'x-veil-operation': 'reindex' };
/** Fails a test whose hold is never opened, rather than hanging the file. */
const WAIT = { timeout: 20_000 };

describe('a policy changed while a request is held', () => {
  let setup: HeldFixture;
  let controller: ControllerStandIn;
  let fixture: SidecarFixture;

  before(async () => {
    setup = await startHeldFixture({ policy: { approvals } });
    ({ controller, fixture } = setup);
  });
  after(() => setup?.close());

  async function apply(overrides: PolicySpecInput): Promise<string> {
    const applied = await fixture.sidecar.store.apply('test', testPolicy([fixture.issuer], overrides));
    assert.ok(applied.ok);
    const hash = fixture.sidecar.store.current()?.hash;
    assert.ok(hash);
    return hash;
  }

  /** Sends a held request, changes the policy while it waits, approves it: the answer. */
  async function approvedAfter(overrides: PolicySpecInput, input: string[] = [secret]) {
    await apply({ approvals });
    const pending = call(
      `${fixture.url}/v1/embeddings`,
      { model: 'm', input },
      { token: await fixture.token(), headers: held },
    );
    const id = await controller.nextOpened();
    const hash = await apply(overrides);
    controller.decide(id, 'approve', 'bob', 'reviewed');
    return { answer: await pending, hash };
  }

  it('refuses, never forwards, a caller the new policy no longer admits', WAIT, async () => {
    const calls = fixture.upstreamCalls.length;
    const { answer, hash } = await approvedAfter({ approvals, access: { rules: [] } });
    assert.equal(answer.status, 403, answer.text);
    assert.equal(fixture.upstreamCalls.length, calls);
    const record = fixture.records().at(-1);
    assert.deepEqual(
      [record?.kind, record?.outcome, record?.status, record?.policy?.hash],
      ['request', 'denied', 403, hash],
    );
  });

  it('masks what it forwards as the new policy says', WAIT, async () => {
    const calls = fixture.upstreamCalls.length;
    const masking = {
      rules: [
        {
          name: 'emails',
          detectors: ['email' as const],
          operator: 'redact' as const,
          scopes: ['forward' as const],
        },
      ],
    };
    const { answer, hash } = await approvedAfter({ approvals, masking });
    assert.equal(answer.status, 200, answer.text);
    assert.equal(fixture.upstreamCalls.length, calls + 1);
    assert.doesNotMatch(JSON.stringify(fixture.upstreamCalls.at(-1)?.body), /jane\.doe/);
    const record = fixture.records().at(-1);
    assert.equal(record?.policy?.hash, hash);
    assert.deepEqual(
      record?.masking.map((m) => [m.detector, m.scope]),
      [['email', 'forward']],
    );
  });

  for (const [what, limits] of [
    ['maxInputsPerRequest', { maxInputsPerRequest: 2 }],
    ['vectorsPerMinute', { vectorsPerMinute: 2 }],
    ['maxBytesPerRequest', { maxBytesPerRequest: 1024 }],
  ] as const) {
    it(`refuses 413, never forwards, what the new ${what} no longer admits`, WAIT, async () => {
      const calls = fixture.upstreamCalls.length;
      const { answer } = await approvedAfter({ approvals, limits }, [
        'a'.repeat(400),
        'b'.repeat(400),
        'c'.repeat(400),
      ]);
      assert.equal(answer.status, 413, answer.text);
      assert.equal(fixture.upstreamCalls.length, calls);
      const record = fixture.records().at(-1);
      assert.deepEqual([record?.kind, record?.outcome, record?.status], ['request', 'too_large', 413]);
    });
  }

  it('forwards what the new limits still admit', WAIT, async () => {
    const calls = fixture.upstreamCalls.length;
    const { answer } = await approvedAfter({ approvals, limits: { maxInputsPerRequest: 2 } }, ['a', 'b']);
    assert.equal(answer.status, 200, answer.text);
    assert.equal(fixture.upstreamCalls.length, calls + 1);
  });
});
