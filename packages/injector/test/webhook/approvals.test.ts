// The webhook's review around @veil/core's stamping rules (tested there): what
// the API server sends in, and the patch or refusal it gets back.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { approvalSpec, now } from '../../../core/test/support/approvals.ts';
import { reviewApprovalAdmission } from '../../src/webhook/approvals.ts';
import { approvalByUser } from './support/approvals.ts';

test('the review patches the status of a status update and refuses spec edits by others', () => {
  const base = {
    uid: 'u1',
    kind: { group: 'veil.dev', version: 'v1alpha1', kind: 'EmbeddingApproval' },
    resource: { group: 'veil.dev', version: 'v1alpha1', resource: 'embeddingapprovals' },
    name: 'a1',
    namespace: 'ml',
    operation: 'UPDATE' as const,
    userInfo: { username: 'bob', groups: ['approvers'] },
  };
  const oldObject = {
    metadata: { name: 'a1' },
    spec: approvalSpec(),
    status: { phase: 'Pending', decisions: [] },
  };
  const stamped = reviewApprovalAdmission(
    {
      ...base,
      subResource: 'status',
      oldObject,
      object: { ...oldObject, status: { decisions: [{ decision: 'deny', reason: 'no', approver: 'eve' }] } },
    },
    { controllerUsernames: [] },
    now,
  );
  assert.equal(stamped.review.response.allowed, true);
  const patch = JSON.parse(Buffer.from(stamped.review.response.patch ?? '', 'base64').toString('utf8'));
  assert.equal(patch[0].path, '/status');
  assert.equal(patch[0].value.phase, 'Denied');
  assert.equal(patch[0].value.decisions[0].approver, 'bob');

  const specEdit = reviewApprovalAdmission(
    {
      ...base,
      oldObject,
      object: { ...oldObject, spec: { ...approvalSpec(), approvers: { groups: ['approvers'], count: 1 } } },
    },
    { controllerUsernames: [] },
    now,
  );
  assert.equal(specEdit.review.response.allowed, false);
  assert.match(
    specEdit.review.response.status?.message ?? '',
    /spec of an EmbeddingApproval cannot be changed/,
  );
});

test('the review refuses the requester deciding on their own request', () => {
  const mine = reviewApprovalAdmission(
    approvalByUser('https://idp.example.com#alice', 'u2'),
    { controllerUsernames: [] },
    now,
  );
  assert.equal(mine.outcome, 'denied');
  assert.equal(mine.review.response.allowed, false);
  assert.match(
    mine.review.response.status?.message ?? '',
    /approval ml\/a1: .*cannot decide on their own request/,
  );
});

test('only the controller creates an approval: anyone else would choose its approvers', () => {
  const create = (username: string) =>
    reviewApprovalAdmission(
      {
        uid: 'u3',
        kind: { group: 'veil.dev', version: 'v1alpha1', kind: 'EmbeddingApproval' },
        resource: { group: 'veil.dev', version: 'v1alpha1', resource: 'embeddingapprovals' },
        name: 'forged',
        namespace: 'ml',
        operation: 'CREATE',
        userInfo: { username, groups: ['approvers'] },
        object: {
          metadata: { name: 'forged' },
          spec: { ...approvalSpec(), approvers: { groups: ['approvers'], count: 1 } },
        },
      },
      { controllerUsernames: ['system:serviceaccount:veil-system:veil-injector'] },
      now,
    );
  const forged = create('mallory');
  assert.equal(forged.outcome, 'denied');
  assert.equal(forged.review.response.allowed, false);
  assert.equal(forged.review.response.status?.code, 403);
  assert.match(forged.review.response.status?.message ?? '', /opened by the Veil controller only/);
  const opened = create('system:serviceaccount:veil-system:veil-injector');
  assert.equal(opened.review.response.allowed, true);
  assert.equal(opened.review.response.patch, undefined);
});

test('a decision on an approval whose stored spec has a field this replica does not know is refused', () => {
  const stamped = reviewApprovalAdmission(
    approvalByUser('bob', 'u4', { ...approvalSpec(), reviewTicket: 'SEC-1234' }),
    { controllerUsernames: [] },
    now,
  );
  // The field may constrain who may decide: a replica that cannot check it fails closed.
  assert.equal(stamped.review.response.allowed, false);
  assert.equal(stamped.review.response.status?.code, 400);
});
