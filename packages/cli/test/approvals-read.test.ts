// What the CLI makes of a stored approval written by a newer controller.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { approvalSpec } from '../../core/test/support/approvals.ts';
import { readApproval } from '../src/approvals/client.ts';

test('an approval whose spec has a field this CLI does not know is read, not reported unreadable', () => {
  const spec = approvalSpec();
  const read = readApproval({
    metadata: { namespace: 'ml', name: 'ea-1' },
    spec: { ...spec, reviewTicket: 'SEC-1234' },
    status: { phase: 'Pending', decisions: [] },
  });
  assert.ok(!('problem' in read), JSON.stringify(read));
  assert.deepEqual(read.spec, spec);
  assert.equal(read.status.phase, 'Pending');
});
