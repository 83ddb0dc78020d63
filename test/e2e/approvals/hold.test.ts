// A held request end to end: an application's OpenAI SDK call through the
// sidecar waits while the sidecar holds it at the controller's approvals API
// (real API server, real TokenReview of a service-account token, real stamping
// webhook), an approver approves with the CLI, and the call completes.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { CustomObjectsApi } from '@kubernetes/client-node';
import { GROUP, VERSION } from '@veil/core';
import OpenAI, { PermissionDeniedError } from 'openai';
import { runApprovalsDecide } from '../../../packages/cli/src/commands/approvals.ts';
import { buildPopulations } from '../../../packages/cli/src/report/populations.ts';
import type { ApprovalsApi } from '../../../packages/injector/src/controller/approvals.ts';
import { type SidecarFixture } from '../../../packages/sidecar/test/fixtures/sidecar.ts';
import type { ControlPlane, User } from '../../harness/index.ts';
import { type HeldSidecarWorld, startHeldSidecar } from './support.ts';

const approvalsPolicy = {
  approvals: {
    rules: [
      {
        name: 'bulk',
        when: { minInputs: 3 },
        approvers: { groups: ['approvers'], count: 1 },
        holdTimeoutSeconds: 120,
      },
    ],
  },
};

let world: HeldSidecarWorld | undefined;
let cp: ControlPlane;
let bob: User;
let namespace: string;
let approvals: ApprovalsApi;
let fixture: SidecarFixture;
/** Moves the controller's clock forward, so an approval can expire while a call is held. */
let clockOffsetMs = 0;

before(async () => {
  world = await startHeldSidecar('hold', approvalsPolicy, {
    now: () => new Date(Date.now() + clockOffsetMs),
  });
  ({ cp, bob, namespace, approvals, fixture } = world);
});

after(() => world?.close());

type Listed = { items: { metadata: { name: string }; status?: { phase?: string; usedAt?: string } }[] };

/** The EmbeddingApprovals of the namespace, as an approver would list them. */
async function listApprovals(): Promise<Listed['items']> {
  const list = (await cp.kubeConfig().makeApiClient(CustomObjectsApi).listNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: 'embeddingapprovals',
  })) as Listed;
  return list.items;
}

test('a held OpenAI SDK call completes after an approver approves it with the CLI', async () => {
  assert.ok(fixture);
  const openai = new OpenAI({
    baseURL: `${fixture.url}/v1`,
    apiKey: await fixture.token(),
    maxRetries: 0,
    timeout: 120_000,
  });
  const upstreamBefore = fixture.upstreamCalls.length;
  const held = openai.embeddings.create({
    model: 'text-embedding-3-small',
    input: ['first document', 'second document', 'third document'],
  });
  let settled = false;
  held.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );

  // Wait for the sidecar to open the approval, as an approver would see it appear.
  let name: string | undefined;
  while (name === undefined) {
    name = (await listApprovals()).find((item) => item.status?.phase === 'Pending')?.metadata.name;
    if (name === undefined) await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.equal(settled, false, 'the call waits while the approval is pending');
  assert.equal(fixture.upstreamCalls.length, upstreamBefore, 'nothing reaches the model before approval');

  await runApprovalsDecide('approve', [`${namespace}/${name}`, '--reason', 'backfill reviewed'], {
    out: () => undefined,
    kubeConfig: () => cp.kubeConfig(bob.kubeconfig),
  });

  const response = await held;
  assert.equal(response.data.length, 3);
  assert.equal(fixture.upstreamCalls.length, upstreamBefore + 1);

  // Consumed: single use, marked used by the controller.
  const stored = (await listApprovals()).find((item) => item.metadata.name === name);
  assert.equal(stored?.status?.phase, 'Approved');
  assert.ok(stored?.status?.usedAt, 'the approval was consumed');

  // The approval's trail, then the request's record: who asked, who decided, what came of it.
  const [requested, decided, record] = fixture.records().slice(-3);
  assert.deepEqual(
    [requested, decided, record].map((r) => [r?.kind, r?.outcome, r?.status]),
    [
      ['approval.requested', 'held', null],
      ['approval.decided', 'allowed', null],
      ['request', 'allowed', 200],
    ],
  );
  for (const r of [requested, decided, record]) assert.equal(r?.approval?.id, `${namespace}/${name}`);
  assert.equal(requested?.identity?.subject, record?.identity?.subject);
  assert.equal(requested?.approval?.requestedAt, record?.approval?.requestedAt);
  // The approver as the API server knows them, stamped by the webhook.
  assert.deepEqual(
    decided?.approval?.approvers.map((a) => [a.subject, a.reason]),
    [['bob', 'backfill reviewed']],
  );
  assert.deepEqual(
    record?.approval?.approvers.map((a) => [a.subject, a.reason]),
    [['bob', 'backfill reviewed']],
  );
  assert.ok(record?.approval?.decidedAt);
});

/** The name of the next approval that shows up as pending in the namespace. */
async function nextPending(seen: ReadonlySet<string>): Promise<string> {
  for (;;) {
    const name = (await listApprovals()).find(
      (item) => item.status?.phase === 'Pending' && !seen.has(item.metadata.name),
    )?.metadata.name;
    if (name !== undefined) return name;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

test('an approval that expires while the call is held ends it with 403 in the SDK, the model never called', async () => {
  assert.ok(fixture);
  const openai = new OpenAI({ baseURL: `${fixture.url}/v1`, apiKey: await fixture.token(), maxRetries: 0 });
  const seen = new Set((await listApprovals()).map((item) => item.metadata.name));
  const upstreamBefore = fixture.upstreamCalls.length;
  const held = openai.embeddings.create({ model: 'text-embedding-3-small', input: ['a', 'b', 'c'] });
  held.catch(() => undefined);
  const name = await nextPending(seen);

  // Past the rule's expiry (the default, an hour) on the controller's clock.
  clockOffsetMs = 2 * 3600 * 1000;
  try {
    assert.ok((await approvals.sweepNow()).expired >= 1);
  } finally {
    clockOffsetMs = 0;
  }
  const error = await held.then(
    () => assert.fail('an expired approval let the call through'),
    (thrown: unknown) => thrown,
  );
  assert.ok(error instanceof PermissionDeniedError, String(error));
  assert.match(error.message, new RegExp(`approval ${namespace}/${name} expired`));
  assert.equal(fixture.upstreamCalls.length, upstreamBefore);
  const record = fixture.records().at(-1);
  assert.deepEqual([record?.outcome, record?.status], ['approval_expired', 403]);
});

test("the report's approvals population shows each approval with its requester and approvers", () => {
  assert.ok(fixture);
  const approvalsPopulation = buildPopulations(fixture.sink.records()).find((p) => p.name === 'approvals');
  assert.ok(approvalsPopulation);
  const column = (row: unknown[], name: string) => row[approvalsPopulation.columns.indexOf(name)];
  const rows = approvalsPopulation.rows.map((row) => ({
    id: column(row, 'approval_id'),
    requester: column(row, 'requester_subject'),
    approvers: column(row, 'approvers'),
    expired: column(row, 'expired_at'),
  }));
  assert.equal(rows.length, 2, JSON.stringify(rows));
  const approved = rows.find((row) => String(row.approvers).includes('bob'));
  assert.ok(approved, JSON.stringify(rows));
  assert.match(String(approved.approvers), /bob .*backfill reviewed/);
  assert.equal(approved.requester, rows[1]?.requester);
  assert.ok(
    rows.some((row) => row.expired !== null && row.expired !== ''),
    JSON.stringify(rows),
  );
});
