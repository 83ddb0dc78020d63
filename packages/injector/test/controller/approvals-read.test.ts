// How the controller reads an approval a newer controller stored.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { approvalSpec } from '../../../core/test/support/approvals.ts';
import { readStored } from '../../src/controller/approvals/store.ts';

test('an approval whose spec has a field this controller does not know is no approval to it', () => {
  const spec = approvalSpec();
  const known = readStored({
    metadata: { namespace: 'ml', name: 'ea-1', resourceVersion: '7' },
    spec,
    status: { phase: 'Approved', decisions: [] },
  });
  assert.deepEqual(known?.spec, spec);
  // The field may be a condition of its use this controller cannot check: never used without it.
  assert.equal(
    readStored({
      metadata: { namespace: 'ml', name: 'ea-2' },
      spec: { ...spec, reviewTicket: 'SEC-1234' },
      status: { phase: 'Approved', decisions: [] },
    }),
    undefined,
  );
});
