// `veil dev` refuses an approval request as the controller does, in the same words.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { approvalRuleSchema, MAX_APPROVAL_SUMMARY } from '@veil/core';
import type { OpenApproval } from '@veil/sidecar';
import { DevApprovals, DevApprovalsError, DevPendingQuotaError } from '../src/dev/approvals.ts';

const rules = [
  approvalRuleSchema.parse({
    name: 'bulk',
    when: { minInputs: 10 },
    approvers: { groups: ['ml-approvers'] },
  }),
];
const opened: OpenApproval = {
  policy: 'default',
  rule: 'bulk',
  pod: { name: 'veil-dev' },
  requester: { issuer: 'http://127.0.0.1:1', subject: 'alice', groups: [] },
  request: { api: 'openai', model: 'demo', inputCount: 12, bytes: 300, digest: 'sha256:aa' },
};

test('an approval request for an API no sidecar speaks, or too long a summary, is refused field by field', async () => {
  const approvals = new DevApprovals({ namespace: 'local', policyName: 'default', rules });
  const request = { ...opened.request, api: '<!channel>', summary: 'x'.repeat(MAX_APPROVAL_SUMMARY + 1) };
  await assert.rejects(approvals.open({ ...opened, request }), (error: unknown) => {
    assert.ok(error instanceof DevApprovalsError);
    assert.match(error.message, /^the approval request is invalid: request\.api: .+; request\.summary: /);
    assert.doesNotMatch(error.message, /[{}[\]\n]/);
    return true;
  });
  assert.equal((await approvals.open(opened)).phase, 'Pending');
  await approvals.close();
});

test('a requester with maxPendingPerCaller approvals Pending gets no other (429) until one is decided or expires', async () => {
  let now = Date.parse('2030-01-01T00:00:00Z');
  const approvals = new DevApprovals({
    namespace: 'local',
    policyName: 'default',
    rules,
    maxPendingPerCaller: 2,
    now: () => new Date(now),
  });
  const overQuota = (error: unknown) => {
    assert.ok(error instanceof DevPendingQuotaError);
    assert.equal(error.status, 429);
    assert.match(error.message, /2 approval\(s\) Pending in local, and policy default allows 2 /);
    return true;
  };
  const first = await approvals.open(opened);
  await approvals.open(opened);
  await assert.rejects(approvals.open(opened), overQuota);
  // Other requesters are not held back: another subject, or the same one from another issuer.
  await approvals.open({ ...opened, requester: { ...opened.requester, subject: 'carol' } });
  await approvals.open({ ...opened, requester: { ...opened.requester, issuer: 'http://127.0.0.1:2' } });

  const bob = { username: 'bob', groups: ['ml-approvers'] };
  assert.ok(approvals.decide('local', first.name, bob, { decision: 'deny', reason: 'no' }).ok);
  await approvals.open(opened);
  await assert.rejects(approvals.open(opened), overQuota);
  now += 3_601_000;
  await approvals.open(opened);
  await approvals.close();
});

test('waiting on an approval veil dev does not hold is a 404, as in a cluster, so a follower drops it', async () => {
  const approvals = new DevApprovals({ namespace: 'local', policyName: 'default', rules });
  await assert.rejects(approvals.wait('local', 'ea-missing', 0), (error: unknown) => {
    assert.equal((error as { status?: unknown }).status, 404);
    assert.match((error as Error).message, /no approval local\/ea-missing/);
    return true;
  });
  await approvals.close();
});
