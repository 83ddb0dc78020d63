// The decision rules both the cluster's stamping webhook and `veil dev` apply.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type ApprovalUser, type StampInput, stampApprovalStatus } from '@veil/core';
import { approvalSpec, now } from '../support/approvals.ts';

const controller = 'system:serviceaccount:veil-system:veil-injector';

const bob: ApprovalUser = { username: 'bob', groups: ['approvers', 'system:authenticated'] };
const carol: ApprovalUser = { username: 'carol', groups: ['approvers'] };

function stamp(partial: Partial<StampInput> & { newStatus: unknown }) {
  return stampApprovalStatus({
    spec: approvalSpec(),
    oldStatus: { phase: 'Pending', decisions: [] },
    user: bob,
    now,
    settings: { controllerUsernames: [controller] },
    ...partial,
  });
}

function approved(by: ApprovalUser, reason = 'ok') {
  return {
    approver: by.username,
    groups: [...by.groups],
    decision: 'approve',
    reason,
    time: now.toISOString(),
  };
}

test('a new decision is stamped with the authenticated user, whatever the body says', () => {
  const result = stamp({
    newStatus: {
      phase: 'Approved',
      decisions: [
        {
          approver: 'carol',
          groups: ['admins'],
          decision: 'approve',
          reason: 'fine',
          time: '2000-01-01T00:00:00Z',
        },
      ],
    },
  });
  assert.ok(result.ok);
  assert.deepEqual(result.status.decisions, [approved(bob, 'fine')]);
  assert.equal(result.status.phase, 'Pending', 'one of two approvals');
  assert.equal(result.status.decidedAt, undefined);
  assert.ok(result.warnings.some((w) => w.includes('recorded as bob')));
});

test('the requester cannot decide their own request, by subject or issuer#subject', () => {
  for (const username of ['alice', 'https://idp.example.com#alice']) {
    const result = stamp({
      user: { username, groups: ['approvers'] },
      newStatus: { decisions: [{ decision: 'approve', reason: 'mine' }] },
    });
    assert.equal(result.ok, false);
    assert.match(!result.ok ? result.message : '', /cannot decide on their own request/);
  }
});

test('a user outside the approver groups is refused', () => {
  const result = stamp({
    user: { username: 'mallory', groups: ['ml'] },
    newStatus: { decisions: [{ decision: 'approve', reason: 'sure' }] },
  });
  assert.equal(result.ok, false);
  assert.match(!result.ok ? result.message : '', /mallory is not an approver.*approvers/);
});

test('two distinct approvers approve; the same approver twice is refused', () => {
  const again = stamp({
    oldStatus: { phase: 'Pending', decisions: [approved(bob)] },
    newStatus: { phase: 'Pending', decisions: [approved(bob), { decision: 'approve', reason: 'again' }] },
  });
  assert.equal(again.ok, false);
  assert.match(!again.ok ? again.message : '', /already decided/);

  const second = stamp({
    user: carol,
    oldStatus: { phase: 'Pending', decisions: [approved(bob)] },
    newStatus: { phase: 'Pending', decisions: [approved(bob), { decision: 'approve', reason: 'also ok' }] },
  });
  assert.ok(second.ok);
  assert.equal(second.status.phase, 'Approved');
  assert.equal(second.status.decidedAt, now.toISOString());
  assert.deepEqual(
    second.status.decisions.map((d) => d.approver),
    ['bob', 'carol'],
  );
});

test('two decisions in one update are refused', () => {
  const result = stamp({
    newStatus: {
      decisions: [
        { decision: 'approve', reason: 'a' },
        { decision: 'approve', reason: 'b' },
      ],
    },
  });
  assert.equal(result.ok, false);
});

test('a deny decides at once, and a terminal phase is never left', () => {
  const denied = stamp({ newStatus: { decisions: [{ decision: 'deny', reason: 'too much data' }] } });
  assert.ok(denied.ok);
  assert.equal(denied.status.phase, 'Denied');
  assert.equal(denied.status.decidedAt, now.toISOString());

  const late = stamp({
    user: carol,
    oldStatus: denied.status,
    newStatus: {
      ...denied.status,
      decisions: [...denied.status.decisions, { decision: 'approve', reason: 'x' }],
    },
  });
  assert.equal(late.ok, false);
  assert.match(!late.ok ? late.message : '', /already Denied/);

  const reopened = stamp({
    user: carol,
    oldStatus: denied.status,
    newStatus: { ...denied.status, phase: 'Pending' },
  });
  assert.ok(reopened.ok);
  assert.equal(reopened.status.phase, 'Denied');
});

test('recorded decisions cannot be edited or removed', () => {
  const old = { phase: 'Pending', decisions: [approved(bob)] };
  const edited = stamp({
    user: carol,
    oldStatus: old,
    newStatus: { decisions: [{ ...approved(bob), reason: 'changed' }] },
  });
  assert.equal(edited.ok, false);
  assert.match(!edited.ok ? edited.message : '', /cannot be changed/);
  const removed = stamp({ user: carol, oldStatus: old, newStatus: { decisions: [] } });
  assert.equal(removed.ok, false);
  assert.match(!removed.ok ? removed.message : '', /cannot be removed/);
});

test('a decision after expiresAt is refused', () => {
  const result = stamp({
    spec: approvalSpec({ expiresAt: '2030-01-01T11:59:59.000Z' }),
    newStatus: { decisions: [{ decision: 'approve', reason: 'late' }] },
  });
  assert.equal(result.ok, false);
  assert.match(!result.ok ? result.message : '', /expired/);
});

test('only the controller expires a Pending approval or records its use', () => {
  const byBob = stamp({ newStatus: { phase: 'Expired', decisions: [] } });
  assert.equal(byBob.ok, false);
  const expired = stamp({
    user: { username: controller, groups: [] },
    newStatus: { phase: 'Expired', decisions: [] },
  });
  assert.ok(expired.ok);
  assert.equal(expired.status.phase, 'Expired');
  assert.equal(expired.status.decidedAt, now.toISOString());

  const approvedStatus = {
    phase: 'Approved',
    decisions: [approved(bob), approved(carol)],
    decidedAt: now.toISOString(),
  };
  const expireApproved = stamp({
    user: { username: controller, groups: [] },
    oldStatus: approvedStatus,
    newStatus: { ...approvedStatus, phase: 'Expired' },
  });
  assert.equal(expireApproved.ok, false);

  const usedByBob = stamp({
    oldStatus: approvedStatus,
    newStatus: { ...approvedStatus, usedAt: now.toISOString() },
  });
  assert.equal(usedByBob.ok, false);
  const used = stamp({
    user: { username: controller, groups: [] },
    oldStatus: approvedStatus,
    newStatus: { ...approvedStatus, usedAt: now.toISOString() },
  });
  assert.ok(used.ok);
  assert.equal(used.status.usedAt, now.toISOString());
  const usedAgain = stamp({
    user: { username: controller, groups: [] },
    oldStatus: used.status,
    newStatus: { ...used.status, usedAt: '2030-01-01T12:30:00.000Z' },
  });
  assert.equal(usedAgain.ok, false);
});
