// Decisions reach the audit stream when nobody waits for them: a deferred
// caller that never retries, a held caller that hung up. The sidecar that
// opened the approval follows it at the controller's approvals API (real API
// server, real TokenReview, real stamping webhook) and records who decided
// what, and why, as an auditor's report lists it.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CustomObjectsApi } from '@kubernetes/client-node';
import { type AuditRecord, GROUP, VERSION } from '@veil/core';
import { request } from 'undici';
import { runApprovalsDecide } from '../../../packages/cli/src/commands/approvals.ts';
import { buildPopulations } from '../../../packages/cli/src/report/populations.ts';
import type { ApprovalsApi } from '../../../packages/injector/src/controller/approvals.ts';
import { call, type SidecarFixture } from '../../../packages/sidecar/test/fixtures/sidecar.ts';
import type { ControlPlane, User } from '../../harness/index.ts';
import { type HeldSidecarWorld, startHeldSidecar } from './support.ts';

const approvalsPolicy = {
  approvals: {
    rules: [
      {
        name: 'later',
        when: { operation: { header: 'x-veil-operation', values: ['later'] } },
        approvers: { groups: ['approvers'], count: 1 },
        mode: 'deferred' as const,
      },
      {
        name: 'reindex',
        when: { operation: { header: 'x-veil-operation', values: ['reindex'] } },
        approvers: { groups: ['approvers'], count: 1 },
        holdTimeoutSeconds: 120,
      },
    ],
  },
};
const body = { model: 'text-embedding-3-small', input: ['first document', 'second document', 'third'] };

let world: HeldSidecarWorld | undefined;
let cp: ControlPlane;
let bob: User;
let namespace: string;
let approvals: ApprovalsApi;
let fixture: SidecarFixture;

before(async () => {
  world = await startHeldSidecar('follow', approvalsPolicy);
  ({ cp, bob, namespace, approvals, fixture } = world);
});

after(() => world?.close());

type Listed = { items: { metadata: { name: string }; status?: { phase?: string } }[] };

/** The name of the next approval that shows up as Pending in the namespace. */
async function nextPending(seen: ReadonlySet<string>): Promise<string> {
  for (;;) {
    const list = (await cp.kubeConfig().makeApiClient(CustomObjectsApi).listNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace,
      plural: 'embeddingapprovals',
    })) as Listed;
    const name = list.items.find((item) => item.status?.phase === 'Pending' && !seen.has(item.metadata.name))
      ?.metadata.name;
    if (name !== undefined) return name;
    await sleep(100);
  }
}

async function decide(decision: 'approve' | 'deny', id: string, reason: string): Promise<void> {
  await runApprovalsDecide(decision, [id, '--reason', reason], {
    out: () => undefined,
    kubeConfig: () => cp.kubeConfig(bob.kubeconfig),
  });
}

/** The approval.decided records of `id`, once there is one; fails after many tries. */
async function decidedRecords(id: string): Promise<AuditRecord[]> {
  assert.ok(fixture);
  for (let tries = 0; tries < 1200; tries++) {
    const decided = fixture.records().filter((r) => r.kind === 'approval.decided' && r.approval?.id === id);
    if (decided.length > 0) return decided;
    await sleep(50);
  }
  return assert.fail(`no approval.decided record of ${id}`);
}

test('a deferred request denied while its caller never comes back has the deny on record, with approver and reason', async () => {
  assert.ok(fixture);
  const answer = await call(`${fixture.url}/v1/embeddings`, body, {
    token: await fixture.token(),
    headers: { 'x-veil-operation': 'later' },
  });
  assert.equal(answer.status, 202, answer.text);
  const id = String(answer.headers['x-veil-approval']);
  assert.match(id, new RegExp(`^${namespace}/`));

  await decide('deny', id, 'not this quarter');
  const decided = await decidedRecords(id);
  assert.deepEqual(
    decided.map((r) => [r.outcome, r.status, r.identity?.subject]),
    [['approval_denied', null, 'alice']],
  );
  assert.deepEqual(
    decided[0]?.approval?.approvers.map((a) => [a.subject, a.reason]),
    [['bob', 'not this quarter']],
  );
  assert.ok(decided[0]?.approval?.decidedAt);

  // The auditor's report lists the approval with its requester and the deny.
  const population = buildPopulations(fixture.sink.records()).find((p) => p.name === 'approvals');
  assert.ok(population);
  const column = (row: unknown[], name: string) => row[population.columns.indexOf(name)];
  const row = population.rows.find((r) => column(r, 'approval_id') === id);
  assert.ok(row, JSON.stringify(population.rows));
  assert.equal(column(row, 'requester_subject'), 'alice');
  assert.match(String(column(row, 'denied_by')), /^bob at .*not this quarter/);
  assert.ok(column(row, 'decided_at'));
});

test('a held request whose caller hung up before the decision has the decision on record', async () => {
  assert.ok(fixture);
  const token = await fixture.token();
  const gone = new AbortController();
  const seen = new Set<string>();
  const hangingUp = request(`${fixture.url}/v1/embeddings`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      'x-veil-operation': 'reindex',
    },
    body: JSON.stringify(body),
    signal: gone.signal,
  }).catch(() => undefined);
  const name = await nextPending(seen);
  const id = `${namespace}/${name}`;
  gone.abort();
  await hangingUp;
  while (fixture.records().at(-1)?.status !== 499) await sleep(20);
  assert.equal(fixture.records().at(-1)?.approval?.id, id);

  await decide('approve', id, 'reindex reviewed');
  const decided = await decidedRecords(id);
  assert.deepEqual(
    decided.map((r) => [
      r.outcome,
      r.identity?.subject,
      r.approval?.approvers.map((a) => [a.subject, a.reason]),
    ]),
    [['allowed', 'alice', [['bob', 'reindex reviewed']]]],
  );
  assert.equal(fixture.upstreamCalls.length, 0, 'nobody was there to forward to');
});
