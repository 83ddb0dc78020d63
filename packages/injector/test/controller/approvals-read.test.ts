// How the controller reads an approval a newer controller stored.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { approvalSpec } from '../../../core/test/support/approvals.ts';
import { readStored } from '../../src/controller/approvals.ts';

test('an approval whose spec has a field this controller does not know is read without it', () => {
  const spec = approvalSpec();
  const stored = readStored({
    metadata: { namespace: 'ml', name: 'ea-1', resourceVersion: '7' },
    spec: { ...spec, reviewTicket: 'SEC-1234' },
    status: { phase: 'Approved', decisions: [] },
  });
  assert.deepEqual(stored?.spec, spec);
  assert.equal(stored?.status.phase, 'Approved');
  // A spec this controller cannot make sense of is still no approval.
  assert.equal(
    readStored({ metadata: { namespace: 'ml', name: 'ea-2' }, spec: { ...spec, rule: '' } }),
    undefined,
  );
});
