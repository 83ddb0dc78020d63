// A rule's notification URL stays with the controller: sidecars get the spec
// without it, and the policy hash is the same with or without it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { policyHash, policySpecSchema, sidecarPolicySpec } from '@veil/core';

const written = {
  access: { rules: [{ name: 'team', groups: ['ml'] }] },
  approvals: {
    rules: [
      {
        name: 'bulk',
        when: { minInputs: 100 },
        approvers: { groups: ['leads'] },
        notify: { url: 'https://hooks.slack.example/services/T0/B0/secret' },
      },
      { name: 'export', when: { minInputs: 1000 }, approvers: { groups: ['leads'] } },
    ],
  },
};

test('sidecars get every approval rule without its notification URL, and nothing else changed', () => {
  const sent = sidecarPolicySpec(written);
  assert.ok(!JSON.stringify(sent).includes('hooks.slack.example'));
  const [bulk, exported] = written.approvals.rules;
  const { notify: _notify, ...bulkKept } = bulk ?? {};
  assert.deepEqual(sent, { ...written, approvals: { rules: [bulkKept, exported] } });
  assert.equal(written.approvals.rules[0]?.notify?.url, 'https://hooks.slack.example/services/T0/B0/secret');
});

test('a spec without approval rules, or not an object at all, is handed on as it is', () => {
  for (const spec of [{ access: {} }, { approvals: {} }, { approvals: { rules: 'x' } }, null, 'text', [1]]) {
    assert.equal(sidecarPolicySpec(spec), spec);
  }
});

test('the policy hash is what sidecars get: the same with or without notification URLs', () => {
  const full = policySpecSchema.parse(written);
  const stripped = policySpecSchema.parse(sidecarPolicySpec(written));
  assert.equal(policyHash(full), policyHash(stripped));
  const otherRule = policySpecSchema.parse({
    ...written,
    approvals: { rules: [{ ...written.approvals.rules[0], approvers: { groups: ['others'] } }] },
  });
  assert.notEqual(policyHash(otherRule), policyHash(full), 'the rest of a rule is hashed');
});
