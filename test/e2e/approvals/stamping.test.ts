// Decisions on EmbeddingApprovals against the real API server, as distinct
// client-certificate users, through the CLI's own code path: the admission
// webhook stamps who decided from the API server's view and refuses the rest.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { WebhookServer } from '@veil/injector';
import { CliError } from '../../../packages/cli/src/command.ts';
import {
  type ApprovalsIo,
  runApprovalsDecide,
  runApprovalsList,
  runApprovalsShow,
} from '../../../packages/cli/src/commands/approvals.ts';
import { type ControlPlane, startControlPlane, type User } from '../../harness/index.ts';
import { eventually, freshNamespace, installCrds } from '../kube/support/cluster.ts';
import {
  approvalSpec,
  createApproval,
  deleteApprovalWebhook,
  grantApprovalAccess,
  patchStatusAs,
  registerApprovalWebhook,
  startApprovalWebhook,
} from './support.ts';

let cp: ControlPlane;
let webhook: WebhookServer | undefined;
let webhookName: string | undefined;
let alice: User; // the requester
let bob: User; // an approver
let carol: User; // a second approver
let mallory: User; // authenticated, allowed by RBAC to try, but no approver

before(async () => {
  cp = await startControlPlane();
  try {
    await installCrds(cp);
    alice = await cp.addUser('alice', ['ml']);
    bob = await cp.addUser('bob', ['approvers']);
    carol = await cp.addUser('carol', ['approvers']);
    mallory = await cp.addUser('mallory', ['ml']);
    await grantApprovalAccess(cp, ['approvers', 'ml']);
    webhook = await startApprovalWebhook(cp);
    webhookName = await registerApprovalWebhook(cp, webhook.url);
    // The API server picks up a new webhook configuration asynchronously: wait
    // until an outsider's decision is refused by it.
    const namespace = await freshNamespace(cp, 'probe');
    const probe = await createApproval(cp, namespace, approvalSpec());
    await eventually('the approvals webhook in force', async () => {
      const message = await decideFails(mallory, 'approve', namespace, probe, 'probe');
      return /not an approver/.test(message) ? true : undefined;
    });
  } catch (error) {
    await teardown();
    throw error;
  }
});

after(teardown);

async function teardown(): Promise<void> {
  if (webhookName) await deleteApprovalWebhook(cp, webhookName).catch(() => undefined);
  await webhook?.close();
  await cp?.stop();
}

function io(user: User, lines: string[] = []): ApprovalsIo {
  return { out: (line) => lines.push(line), kubeConfig: () => cp.kubeConfig(user.kubeconfig) };
}

function decide(user: User, decision: 'approve' | 'deny', namespace: string, name: string, reason: string) {
  return runApprovalsDecide(decision, [`${namespace}/${name}`, '--reason', reason], io(user));
}

/** The message the CLI prints when the decision is refused. */
async function decideFails(
  user: User,
  decision: 'approve' | 'deny',
  namespace: string,
  name: string,
  reason: string,
): Promise<string> {
  try {
    await decide(user, decision, namespace, name, reason);
  } catch (error) {
    if (error instanceof CliError) return error.message;
    throw error;
  }
  throw new Error(`${user.name}'s ${decision} of ${name} was accepted`);
}

test('the requester cannot approve their own request, nor can an outsider', async () => {
  const namespace = await freshNamespace(cp, 'self');
  const name = await createApproval(cp, namespace, approvalSpec());

  const own = await decideFails(alice, 'approve', namespace, name, 'it is mine');
  assert.match(own, new RegExp(`approvals approve ${namespace}/${name} refused`));
  assert.match(own, /alice requested this call and cannot decide on their own request/);

  const outsider = await decideFails(mallory, 'approve', namespace, name, 'looks fine');
  assert.match(outsider, /mallory is not an approver of this request: it needs a member of approvers/);

  const lines: string[] = [];
  await runApprovalsShow([name, '-n', namespace], io(bob, lines));
  assert.ok(lines.some((l) => /^Phase:\s+Pending$/.test(l)));
  assert.ok(lines.some((l) => /^Decisions:\s+none yet$/.test(l)));
});

test('a forged approver, groups and time in the body are replaced by the real user', async () => {
  const namespace = await freshNamespace(cp, 'forge');
  const name = await createApproval(cp, namespace, approvalSpec());
  const forged = {
    approver: 'carol',
    groups: ['approvers', 'system:masters'],
    decision: 'approve',
    reason: 'signed off',
    time: '2001-01-01T00:00:00Z',
  };
  const stored = (await patchStatusAs(cp, bob.kubeconfig, namespace, name, [
    { op: 'add', path: '/status/decisions/-', value: forged },
    { op: 'replace', path: '/status/phase', value: 'Approved' },
  ])) as {
    status: {
      phase: string;
      decidedAt?: string;
      decisions: { approver: string; groups: string[]; time: string }[];
    };
  };
  assert.equal(stored.status.decisions.length, 1);
  const decision = stored.status.decisions[0];
  assert.equal(decision?.approver, 'bob');
  assert.ok(!decision?.groups.includes('system:masters'));
  assert.ok(decision?.groups.includes('approvers'));
  assert.notEqual(decision?.time, forged.time);
  // One approver was needed: the phase follows from the stamped decision.
  assert.equal(stored.status.phase, 'Approved');
  assert.ok(stored.status.decidedAt);
});

test('two of N needs two different approvers; the same approver twice is refused', async () => {
  const namespace = await freshNamespace(cp, 'two');
  const name = await createApproval(
    cp,
    namespace,
    approvalSpec({ approvers: { groups: ['approvers'], count: 2 } }),
  );

  const first = await decide(bob, 'approve', namespace, name, 'reviewed the summary');
  assert.equal(first.status.phase, 'Pending');
  assert.equal(first.status.decisions[0]?.approver, 'bob');

  const again = await decideFails(bob, 'approve', namespace, name, 'really sure');
  assert.match(again, /bob has already decided on this request/);

  const listed: string[] = [];
  await runApprovalsList(['--pending', '-n', namespace], io(carol, listed));
  assert.ok(listed.some((l) => l.startsWith(name) && /\bPending\b/.test(l) && /\b1\/2\b/.test(l)));

  const second = await decide(carol, 'approve', namespace, name, 'agreed');
  assert.equal(second.status.phase, 'Approved');
  assert.deepEqual(
    second.status.decisions.map((d) => [d.approver, d.reason]),
    [
      ['bob', 'reviewed the summary'],
      ['carol', 'agreed'],
    ],
  );
  assert.ok(second.status.decidedAt);

  // Decided: no further decisions, and recorded ones cannot be rewritten.
  const late = await decideFails(carol, 'deny', namespace, name, 'changed my mind');
  assert.match(late, /already (Approved|decided)/);
  await assert.rejects(
    patchStatusAs(cp, carol.kubeconfig, namespace, name, [
      { op: 'replace', path: '/status/decisions/0/reason', value: 'rubber stamp' },
    ]),
    (error: unknown) =>
      /recorded decision 1 \(by bob\) cannot be changed/.test(String((error as { body?: unknown }).body)),
  );

  const pending: string[] = [];
  await runApprovalsList(['--pending', '-n', namespace], io(carol, pending));
  assert.deepEqual(pending, [`No pending approvals in namespace ${namespace}.`]);
  const shown: string[] = [];
  await runApprovalsShow([`${namespace}/${name}`], io(bob, shown));
  assert.ok(shown.some((l) => /approve\s+bob\s+"reviewed the summary"/.test(l)));
  assert.ok(shown.some((l) => /approve\s+carol\s+"agreed"/.test(l)));
});

test('a deny denies the request', async () => {
  const namespace = await freshNamespace(cp, 'deny');
  const name = await createApproval(
    cp,
    namespace,
    approvalSpec({ approvers: { groups: ['approvers'], count: 2 } }),
  );
  await decide(bob, 'approve', namespace, name, 'fine by me');
  const denied = await decide(carol, 'deny', namespace, name, 'customer data must not leave');
  assert.equal(denied.status.phase, 'Denied');
  assert.equal(denied.status.decisions.at(-1)?.decision, 'deny');
  assert.equal(denied.status.decisions.at(-1)?.approver, 'carol');
});

test('only the controller expires a pending approval', async () => {
  const namespace = await freshNamespace(cp, 'expire');
  const name = await createApproval(cp, namespace, approvalSpec());
  await assert.rejects(
    patchStatusAs(cp, bob.kubeconfig, namespace, name, [
      { op: 'replace', path: '/status/phase', value: 'Expired' },
    ]),
    (error: unknown) =>
      /only the Veil controller marks an approval Expired/.test(String((error as { body?: unknown }).body)),
  );
  const expired = (await patchStatusAs(cp, cp.kubeconfig, namespace, name, [
    { op: 'replace', path: '/status/phase', value: 'Expired' },
  ])) as { status: { phase: string } };
  assert.equal(expired.status.phase, 'Expired');
  const late = await decideFails(bob, 'approve', namespace, name, 'too late');
  assert.match(late, /already Expired/);
});
