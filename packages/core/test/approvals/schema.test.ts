// A stored approval's spec as readers take it: a key a newer controller added
// is dropped rather than making the approval unreadable; writes stay strict.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { approvalSpecSchema, storedApprovalSpecSchema } from '../../src/approvals/schema.ts';
import { approvalSpec } from '../support/approvals.ts';

test('a spec with a key this version does not know is read without it, and still refused for writing', () => {
  const spec = approvalSpec();
  const newer = { ...spec, reviewTicket: 'SEC-1234' };
  const read = storedApprovalSpecSchema.safeParse(newer);
  assert.ok(read.success, read.error?.message);
  assert.deepEqual(read.data, spec);
  assert.equal(approvalSpecSchema.safeParse(newer).success, false);
});

test('reading leniently checks every known field as strictly as writing', () => {
  const spec = approvalSpec();
  for (const broken of [
    { ...spec, approvers: { groups: ['approvers'], count: 0 } },
    { ...spec, request: { ...spec.request, api: 'passthrough' } },
    { ...spec, ruleHash: 'md5:abc' },
    { ...spec, requester: { ...spec.requester, extra: true } },
  ]) {
    assert.equal(storedApprovalSpecSchema.safeParse(broken).success, false, JSON.stringify(broken));
  }
});
