// The approvals service `veil dev` runs in process, on its own clock: expiry,
// the long poll, single use under concurrency, and shutdown.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { approvalRuleSchema } from '@veil/core';
import type { OpenApproval } from '@veil/sidecar';
import { DevApprovals } from '../src/dev/approvals.ts';

const rules = [
  approvalRuleSchema.parse({
    name: 'bulk',
    when: { minInputs: 10 },
    approvers: { groups: ['ml-approvers'], count: 1 },
    expiresAfterSeconds: 60,
  }),
];
const requester = { issuer: 'http://127.0.0.1:1', subject: 'alice', groups: ['ml-readers'] };
const opened: OpenApproval = {
  policy: 'default',
  rule: 'bulk',
  pod: { name: 'veil-dev' },
  requester,
  request: { api: 'openai', model: 'demo', inputCount: 12, bytes: 300, digest: 'sha256:aa' },
};
const bob = { username: 'bob', groups: ['ml-approvers'] };
// Everything approvers were shown, as the sidecar sends it with the digest.
const use = {
  requester: { issuer: requester.issuer, subject: 'alice' },
  digest: 'sha256:aa',
  policy: 'default',
  rule: 'bulk',
  request: { api: 'openai', model: 'demo', inputCount: 12, bytes: 300 },
};

function service(clock: { now: number }, log?: (line: string) => void) {
  return new DevApprovals({
    namespace: 'local',
    policyName: 'default',
    rules,
    now: () => new Date(clock.now),
    log,
  });
}

test('an undecided approval expires at expiresAt: no decision and no use after', async () => {
  const clock = { now: Date.parse('2030-01-01T00:00:00Z') };
  const approvals = service(clock);
  const view = await approvals.open(opened);
  assert.equal(view.phase, 'Pending');
  assert.equal(view.expiresAt, '2030-01-01T00:01:00.000Z');

  clock.now += 60_000;
  assert.equal((await approvals.wait('local', view.name, 0)).phase, 'Expired');
  const late = approvals.decide('local', view.name, bob, { decision: 'approve', reason: 'late' });
  assert.deepEqual(late, {
    ok: false,
    status: 403,
    message: 'the approval is already Expired; no further decisions are taken',
  });
  const used = await approvals.use('local', view.name, use);
  assert.equal(used.ok ? undefined : used.reason, 'Expired');
  await approvals.close();
});

/**
 * Whether `promise` settles within one turn of the event loop: a waiter woken by
 * the decision does, one left to its timeout of minutes does not.
 */
function settlesWithinATurn(promise: Promise<unknown>): Promise<boolean> {
  const turn = new Promise<false>((resolve) => setImmediate(() => resolve(false)));
  return Promise.race([
    promise.then(
      () => true,
      () => true,
    ),
    turn,
  ]);
}

test('a long poll returns as soon as the decision is recorded', async () => {
  const approvals = service({ now: Date.now() });
  try {
    const view = await approvals.open(opened);
    const waiting = approvals.wait('local', view.name, 600);
    assert.equal(await settlesWithinATurn(waiting), false, 'an undecided approval keeps the poll waiting');

    approvals.decide('local', view.name, bob, { decision: 'approve', reason: 'ok' });
    assert.equal(await settlesWithinATurn(waiting), true, 'the decision woke the poll');
    const decided = await waiting;
    assert.equal(decided.phase, 'Approved');
    assert.deepEqual(
      decided.decisions.map((d) => d.approver),
      ['bob'],
    );
  } finally {
    await approvals.close();
  }
});

test('of two concurrent uses of a single-use approval, one wins', async () => {
  const approvals = service({ now: Date.now() });
  const view = await approvals.open(opened);
  approvals.decide('local', view.name, bob, { decision: 'approve', reason: 'ok' });
  const results = await Promise.all([
    approvals.use('local', view.name, use),
    approvals.use('local', view.name, use),
  ]);
  assert.deepEqual(
    results.map((r) => (r.ok ? 'ok' : r.reason)),
    ['ok', 'used'],
  );
  assert.ok(approvals.get('local', view.name)?.status.usedAt);
  await approvals.close();
});

test('rules come from the policy: an unknown rule or policy is not opened', async () => {
  const approvals = service({ now: Date.now() });
  await assert.rejects(
    approvals.open({ ...opened, rule: 'other' }),
    /no approval rule other in policy default/,
  );
  await assert.rejects(
    approvals.open({ ...opened, policy: 'other' }),
    /no approval rule bulk in policy other/,
  );
  await assert.rejects(
    approvals.open({ ...opened, request: { ...opened.request, inputCount: -1 } }),
    /the approval request is invalid/,
  );
  await approvals.close();
});

test('shutting down releases held callers, who are then failed closed', async () => {
  const approvals = service({ now: Date.now() });
  const view = await approvals.open(opened);
  const waiting = approvals.wait('local', view.name, 30);
  await approvals.close();
  await assert.rejects(waiting, /veil dev is shutting down/);
  await assert.rejects(approvals.open(opened), /shutting down/);
});

test("the log line of an approval shows the requester's strings escaped, never as terminal controls", async () => {
  const lines: string[] = [];
  const approvals = service({ now: Date.now() }, (line) => lines.push(line));
  const hostile = 'demo\u001b]0;PWNED\u0007\u001b[2J';
  const view = await approvals.open({
    ...opened,
    requester: { ...requester, subject: 'alice\u009b2J' },
    request: { ...opened.request, model: hostile },
  });
  approvals.decide(
    'local',
    view.name,
    { ...bob, username: 'bob\u001b[1A' },
    { decision: 'deny', reason: 'no' },
  );
  await approvals.close();
  assert.equal(lines.length, 2);
  assert.ok(
    lines.every((line) => !/\p{Cc}/u.test(line)),
    lines.join('\n'),
  );
  assert.match(
    lines[0] ?? '',
    /opened: "alice\\u009b2J" asked "demo\\u001b\]0;PWNED\\u0007\\u001b\[2J" for 12/,
  );
  assert.match(lines[1] ?? '', /: "bob\\u001b\[1A" denied; now Denied$/);
});
