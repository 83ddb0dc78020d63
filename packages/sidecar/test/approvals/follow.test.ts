// The sidecar follows each approval it opened until it is settled, whoever
// waits on it: the pure parts of that (the list's file, what is left to
// record, which approval to ask after next), then a sidecar against the
// stand-in controller, across a restart.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  type ApprovalView,
  ControllerUnavailableError,
  controllerApprovalsClient,
  isApprovalGone,
} from '../../src/approvals/client.ts';
import {
  backoffMs,
  decidedDraft,
  FOLLOW_FILE,
  type Followed,
  type FollowSlot,
  followedFromDraft,
  nextDue,
  parseFollowState,
  serializeFollowState,
  unrecorded,
} from '../../src/approvals/follow.ts';
import type { AuditDraft } from '../../src/audit/sink.ts';
import { sidecarConfigSchema } from '../../src/config.ts';
import { startSidecar } from '../../src/sidecar.ts';
import { call, MemorySink } from '../fixtures/sidecar.ts';
import { type HeldFixture, startControllerStandIn, startHeldFixture } from './controller.ts';

const requestedDraft: AuditDraft = {
  time: '2026-03-01T10:00:00.000Z',
  kind: 'approval.requested',
  outcome: 'held',
  status: null,
  identity: { issuer: 'https://idp.example.com', subject: 'alice', groups: ['ml'] },
  policy: { name: 'default', hash: 'h1' },
  api: 'openai',
  route: '/v1/embeddings',
  model: 'text-embedding-3-small',
  inputCount: 3,
  approval: { id: 'ml/ea-000001', approvers: [], requestedAt: '2026-03-01T10:00:00.000Z' },
  latency: { totalMs: 4 },
};

function followed(): Followed {
  const made = followedFromDraft(requestedDraft);
  assert.ok(made);
  return made;
}

function view(overrides: Partial<ApprovalView>): ApprovalView {
  return {
    namespace: 'ml',
    name: 'ea-000001',
    phase: 'Pending',
    expiresAt: '2026-03-01T11:00:00Z',
    requestedAt: '2026-03-01T10:00:00Z',
    decisions: [],
    ...overrides,
  };
}

const bobDenies = {
  approver: 'bob',
  decision: 'deny' as const,
  reason: 'not this quarter',
  time: '2026-03-01T10:05:00Z',
};

test('an approval.requested record is followed with the request it was opened for; other records are not', () => {
  assert.deepEqual(followed(), {
    namespace: 'ml',
    name: 'ea-000001',
    requestedAt: '2026-03-01T10:00:00.000Z',
    subject: {
      identity: requestedDraft.identity,
      policy: requestedDraft.policy,
      api: 'openai',
      route: '/v1/embeddings',
      model: 'text-embedding-3-small',
      inputCount: 3,
    },
    recorded: [],
  });
  assert.equal(followedFromDraft({ ...requestedDraft, kind: 'approval.decided' }), undefined);
  assert.equal(followedFromDraft({ ...requestedDraft, kind: 'request' }), undefined);
  const approval = { id: 'ml/ea-1/extra', approvers: [], requestedAt: '2026-03-01T10:00:00.000Z' };
  assert.equal(followedFromDraft({ ...requestedDraft, approval }), undefined, 'not NAMESPACE/NAME');
});

test('the list round-trips through its file; a damaged one is refused naming where, never the value', () => {
  const list = [followed(), { ...followed(), name: 'ea-000002', recorded: ['k1'] }];
  assert.deepEqual(parseFollowState(serializeFollowState(list)), list);
  const damaged = serializeFollowState([{ ...followed(), namespace: 'Secret_Value' }]);
  assert.throws(
    () => parseFollowState(damaged),
    (error: Error) =>
      /approvals\.0\.namespace/.test(error.message) && !error.message.includes('Secret_Value'),
  );
  assert.throws(() => parseFollowState('{"version":1,'), /not JSON/);
  assert.throws(() => parseFollowState('{"version":2,"approvals":[]}'), /invalid at version/);
});

test('what is left to record: each decision with who, when and why, then the expiry, none twice', () => {
  const entry = followed();
  const denied = view({ phase: 'Denied', decidedAt: '2026-03-01T10:05:00Z', decisions: [bobDenies] });
  const [deny, ...more] = unrecorded(entry, denied);
  assert.equal(more.length, 0);
  assert.ok(deny);
  assert.deepEqual(deny.event, {
    kind: 'approval.decided',
    outcome: 'approval_denied',
    approval: {
      id: 'ml/ea-000001',
      approvers: [{ subject: 'bob', time: '2026-03-01T10:05:00.000Z', reason: 'not this quarter' }],
      requestedAt: '2026-03-01T10:00:00.000Z',
      decidedAt: '2026-03-01T10:05:00.000Z',
    },
  });
  entry.recorded.push(deny.key);
  assert.deepEqual(unrecorded(entry, denied), [], 'recorded once');

  const carol = { approver: 'carol', decision: 'approve' as const, reason: '', time: '2026-03-01T10:02:00Z' };
  const expired = unrecorded(followed(), view({ phase: 'Expired', decisions: [carol] }));
  assert.deepEqual(
    expired.map(({ event }) => [event.outcome, event.approval.approvers.map((a) => a.subject)]),
    [
      ['allowed', ['carol']],
      ['approval_expired', []],
    ],
  );
  assert.equal(expired[1]?.event.approval.decidedAt, '2026-03-01T11:00:00.000Z');
});

test("a follower's record has the request's subject, answers nobody and is no request's latency", () => {
  const entry = followed();
  const [deny] = unrecorded(entry, view({ phase: 'Denied', decisions: [bobDenies] }));
  assert.ok(deny);
  const draft = decidedDraft(entry, deny.event, new Date('2026-03-01T10:05:01.000Z'));
  assert.deepEqual(draft, {
    time: '2026-03-01T10:05:01.000Z',
    kind: 'approval.decided',
    outcome: 'approval_denied',
    status: null,
    identity: requestedDraft.identity,
    policy: requestedDraft.policy,
    api: 'openai',
    route: '/v1/embeddings',
    model: 'text-embedding-3-small',
    inputCount: 3,
    approval: deny.event.approval,
    latency: { totalMs: 0 },
  });
});

test('a free worker takes the approval due longest that no other worker asks after, or sleeps until one is due', () => {
  const slot = (dueAt: number): FollowSlot => ({ followed: followed(), dueAt, failures: 0 });
  const slots: [string, FollowSlot][] = [
    ['a', slot(50)],
    ['b', slot(10)],
    ['c', slot(500)],
  ];
  assert.deepEqual(nextDue(slots, new Set(), 100), { take: 'b' });
  assert.deepEqual(nextDue(slots, new Set(['b']), 100), { take: 'a' });
  assert.deepEqual(nextDue(slots, new Set(['a', 'b']), 100), { sleepMs: 400 });
  assert.deepEqual(nextDue(slots, new Set(['a', 'b', 'c']), 100), { sleepMs: undefined });
  assert.deepEqual(nextDue([], new Set(), 100), { sleepMs: undefined });
});

test('errors back off, doubling up to the cap', () => {
  const backoff = { baseMs: 1_000, capMs: 60_000 };
  assert.deepEqual(
    [1, 2, 3, 6, 7, 40].map((failures) => backoffMs(failures, backoff)),
    [1_000, 2_000, 4_000, 32_000, 60_000, 60_000],
  );
});

const policy = {
  approvals: {
    rules: [
      {
        name: 'later',
        when: { operation: { header: 'x-veil-operation', values: ['later'] } },
        approvers: { groups: ['ml-approvers'] },
        mode: 'deferred' as const,
      },
    ],
  },
};
const body = { model: 'text-embedding-3-small', input: ['first', 'second', 'third'] };

/** Waits for `condition`, failing with `what` after many tries. */
async function until(condition: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let tries = 0; tries < 600; tries++) {
    if (await condition()) return;
    await sleep(50);
  }
  assert.fail(`never happened: ${what}`);
}

describe('a sidecar following the approvals it opened', () => {
  let held: HeldFixture;

  before(async () => {
    held = await startHeldFixture({ policy });
  });
  after(() => held.close());

  const decided = (sink: MemorySink, id: string) =>
    sink.records().filter((r) => r.kind === 'approval.decided' && r.approval?.id === id);

  async function deferred(): Promise<string> {
    const { fixture, controller } = held;
    const answer = await call(`${fixture.url}/v1/embeddings`, body, {
      token: await fixture.token(),
      headers: { 'x-veil-operation': 'later' },
    });
    assert.equal(answer.status, 202, answer.text);
    return controller.nextOpened();
  }

  it('records a deny nobody came back for, once, even when the caller then retries', async () => {
    const { fixture, controller } = held;
    const id = await deferred();
    controller.decide(id, 'deny', 'bob', 'not this quarter');
    await until(() => decided(fixture.sink, id).length > 0, 'the deny on record');
    const [deny] = decided(fixture.sink, id);
    assert.equal(deny?.outcome, 'approval_denied');
    assert.equal(deny?.identity?.subject, 'alice');
    assert.equal(deny?.route, '/v1/embeddings');
    assert.deepEqual(
      deny?.approval?.approvers.map((a) => [a.subject, a.reason]),
      [['bob', 'not this quarter']],
    );

    const retry = await call(`${fixture.url}/v1/embeddings`, body, {
      token: await fixture.token(),
      headers: { 'x-veil-operation': 'later', 'x-veil-approval': id },
    });
    assert.equal(retry.status, 403);
    assert.equal(decided(fixture.sink, id).length, 1, 'the retry saw the deny, which is on record once');
    const file = join(fixture.stateDir, 'policy', FOLLOW_FILE);
    await until(async () => parseFollowState(await readFile(file, 'utf8')).length === 0, 'the list emptied');
  });

  it('goes on following after a restart, from the list in its state directory', async () => {
    const { fixture, controller } = held;
    const id = await deferred();
    const stateDir = join(fixture.stateDir, 'policy');
    await fixture.sidecar.close();
    const left = parseFollowState(await readFile(join(stateDir, FOLLOW_FILE), 'utf8'));
    assert.deepEqual(
      left.map((f) => `${f.namespace}/${f.name}`),
      [id],
    );
    controller.decide(id, 'deny', 'bob', 'wrong bucket');
    // An approval the controller does not have (swept, say) leaves the list.
    const gone = { ...left[0], name: 'ea-gone' } as Followed;
    await writeFile(join(stateDir, FOLLOW_FILE), serializeFollowState([...left, gone]));

    const tokenFile = join(fixture.stateDir, 'restarted-token');
    await writeFile(tokenFile, controller.token);
    const sink = new MemorySink();
    const restarted = await startSidecar(
      sidecarConfigSchema.parse({
        upstream: 'http://127.0.0.1:9',
        host: '127.0.0.1',
        proxyPort: 0,
        adminHost: '127.0.0.1',
        adminPort: 0,
        stateDir,
        pod: { namespace: 'test', name: 'embed-0', uid: 'pod-0123' },
        approvalsUrl: held.controller.url,
        controllerTokenFile: tokenFile,
      }),
      { sink, log: () => undefined },
    );
    try {
      await until(() => decided(sink, id).length > 0, 'the deny on record after the restart');
      assert.deepEqual(
        decided(sink, id).map((r) => [r.outcome, r.identity?.subject, r.approval?.approvers[0]?.reason]),
        [['approval_denied', 'alice', 'wrong bucket']],
      );
      const file = join(stateDir, FOLLOW_FILE);
      await until(
        async () => parseFollowState(await readFile(file, 'utf8')).length === 0,
        'the list emptied',
      );
    } finally {
      await restarted.close();
    }
  });
});

describe('a sidecar that asks after its approvals seldom', () => {
  let held: HeldFixture;

  // Asked once at opening, then not within the test: what is on record is the requests' doing.
  before(async () => {
    held = await startHeldFixture({ policy, follow: { pollMs: 3_600_000 } });
  });
  after(() => held.close());

  it('does not record again after a restart a decision a retry recorded', async () => {
    const { fixture, controller } = held;
    const token = await fixture.token();
    const opened = await call(`${fixture.url}/v1/embeddings`, body, {
      token,
      headers: { 'x-veil-operation': 'later' },
    });
    assert.equal(opened.status, 202, opened.text);
    const id = await controller.nextOpened();
    const stateDir = join(fixture.stateDir, 'policy');
    const file = join(stateDir, FOLLOW_FILE);
    // Asked after once, Pending, before the decision: the follower has nothing to record.
    await until(() => controller.asked.includes(id), 'the follower asked after the approval');
    controller.decide(id, 'deny', 'bob', 'not now');
    const retry = await call(`${fixture.url}/v1/embeddings`, body, {
      token,
      headers: { 'x-veil-operation': 'later', 'x-veil-approval': id },
    });
    assert.equal(retry.status, 403, retry.text);
    const recordedByRetry = fixture.sink
      .records()
      .filter((r) => r.kind === 'approval.decided' && r.approval?.id === id);
    assert.equal(recordedByRetry.length, 1);
    await fixture.sidecar.close();
    // Without waiting, and once per pollMs: not asked again within the test.
    assert.deepEqual(
      controller.asked.filter((asked) => asked === id),
      [id],
    );

    const tokenFile = join(fixture.stateDir, 'restarted-token');
    await writeFile(tokenFile, controller.token);
    const sink = new MemorySink();
    const restarted = await startSidecar(
      sidecarConfigSchema.parse({
        upstream: 'http://127.0.0.1:9',
        host: '127.0.0.1',
        proxyPort: 0,
        adminHost: '127.0.0.1',
        adminPort: 0,
        stateDir,
        pod: { namespace: 'test', name: 'embed-0', uid: 'pod-0123' },
        approvalsUrl: controller.url,
        controllerTokenFile: tokenFile,
      }),
      { sink, log: () => undefined },
    );
    try {
      // The restarted follower asks at once, finds the approval Denied, and lets it go.
      await until(
        async () => parseFollowState(await readFile(file, 'utf8')).length === 0,
        'the list emptied',
      );
      assert.deepEqual(
        sink.records().filter((r) => r.kind === 'approval.decided'),
        [],
        'the deny the retry recorded is not recorded again',
      );
    } finally {
      await restarted.close();
    }
  });
});

describe('a sidecar whose list of approvals followed is full', () => {
  let held: HeldFixture;

  before(async () => {
    held = await startHeldFixture({ policy, follow: { pollMs: 50, maxFollowed: 1 } });
  });
  after(() => held.close());

  it('still gives the caller the approval it opened, and follows it not', async () => {
    const { fixture, controller } = held;
    const token = await fixture.token();
    const open = () =>
      call(`${fixture.url}/v1/embeddings`, body, { token, headers: { 'x-veil-operation': 'later' } });
    assert.equal((await open()).status, 202);
    const first = await controller.nextOpened();
    const second = await open();
    assert.equal(second.status, 202, second.text);
    const unfollowed = await controller.nextOpened();
    assert.match(second.text, new RegExp(unfollowed));
    const file = join(fixture.stateDir, 'policy', FOLLOW_FILE);
    assert.deepEqual(
      parseFollowState(await readFile(file, 'utf8')).map((f) => `${f.namespace}/${f.name}`),
      [first],
    );
  });
});

test("only the controller's own answer for an approval it has not says the approval is gone", async () => {
  const controller = await startControllerStandIn();
  const dir = await mkdtemp(join(tmpdir(), 'veil-approvals-'));
  const tokenFile = join(dir, 'token');
  await writeFile(tokenFile, controller.token);
  const right = await controllerApprovalsClient({ url: controller.url, tokenFile });
  // A wrong path, as a mistyped URL or a proxy in between gives: a 404, but no word on the approval.
  const wrong = await controllerApprovalsClient({ url: `${controller.url}/veil`, tokenFile });
  try {
    await assert.rejects(right.wait('test', 'ea-none', 0), (error) => isApprovalGone(error));
    await assert.rejects(
      wrong.wait('test', 'ea-none', 0),
      (error) =>
        !isApprovalGone(error) && error instanceof ControllerUnavailableError && /404/.test(error.message),
    );
  } finally {
    await right.close();
    await wrong.close();
    await controller.close();
    await rm(dir, { recursive: true, force: true });
  }
});
