// `veil dev` refuses an approval request as the controller does, in the same words.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { approvalRuleSchema, MAX_APPROVAL_SUMMARY } from '@veil/core';
import type { OpenApproval } from '@veil/sidecar';
import { DevApprovals, DevApprovalsError } from '../src/dev/approvals.ts';

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
