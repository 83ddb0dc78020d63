// `veil approvals … --dev` against a real `veil dev`: callers send OpenAI-style
// requests over HTTP to its proxy, an approval rule holds them, and approvers
// decide through the CLI's own command functions with dev approver tokens.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { DEFAULT_MAX_PENDING_PER_CALLER } from '@veil/core';
import type { Approval } from '../src/approvals/client.ts';
import { CliError } from '../src/command.ts';
import {
  type ApprovalsIo,
  runApprovalsDecide,
  runApprovalsList,
  runApprovalsShow,
} from '../src/commands/approvals.ts';
import { mintDevToken, type RunningDev, startDev } from '../src/commands/dev.ts';
import { openDevState, writeDevInfo } from '../src/dev/state.ts';

const rule = (name: string, extra: Record<string, unknown> = {}) => ({
  name,
  when: { operation: { header: 'x-veil-operation', values: [name] } },
  approvers: { groups: ['ml-approvers'], count: 1 },
  holdTimeoutSeconds: 30,
  ...extra,
});

const policy = {
  apiVersion: 'veil.dev/v1alpha1',
  kind: 'EmbeddingPolicy',
  metadata: { name: 'default', namespace: 'ml' },
  spec: {
    access: { rules: [{ name: 'readers', action: 'allow', groups: ['ml-readers'], models: ['*'] }] },
    approvals: {
      rules: [
        rule('one'),
        rule('two', { approvers: { groups: ['ml-approvers', 'leads'], count: 2 } }),
        rule('later', { mode: 'deferred' }),
        rule('brief', { holdTimeoutSeconds: 1 }),
      ],
    },
  },
};

let root: string;
let state: string;
let dev: RunningDev;
const tokens: Record<string, string> = {};
const seen = new Set<string>();

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'veil-dev-approvals-'));
  state = join(root, '.veil');
  const policyFile = join(root, 'policy.json');
  await writeFile(policyFile, JSON.stringify(policy));
  dev = await startDev({
    port: 0,
    adminPort: 0,
    issuerPort: 0,
    approvalsPort: 0,
    policyFile,
    stateDir: state,
  });
  const mint = (sub: string, groups: string[], approver: boolean) =>
    mintDevToken({ sub, groups, approver, stateDir: state });
  tokens.alice = await mint('alice', ['ml-readers'], false);
  tokens.carol = await mint('carol', ['ml-readers'], false);
  tokens.bob = await mint('bob', ['ml-approvers'], true);
  tokens.dana = await mint('dana', ['leads'], true);
  tokens.aliceApprover = await mint('alice', ['ml-approvers'], true);
  tokens.mallory = await mint('mallory', ['ml-readers'], true);
});

after(async () => {
  await dev?.close();
  await rm(root, { recursive: true, force: true });
});

function capture(env: Record<string, string> = {}): { io: ApprovalsIo; out: string[] } {
  const out: string[] = [];
  return {
    out,
    io: {
      out: (line) => out.push(line),
      kubeConfig: () => assert.fail('--dev never reads a kubeconfig'),
      env,
    },
  };
}

/** The parts of the proxy's answers these tests read: vectors, an error, or a held approval. */
type Answer = {
  data?: { embedding: number[] }[];
  error?: { message: string; type: string; param: string | null; code: string };
  approval?: { id: string; status: string };
};

const devArgs = (token: string) => ['--dev', '--state', state, '--token', token];

async function embed(
  caller: string,
  operation: string,
  options: { approval?: string; input?: string[] } = {},
): Promise<{ status: number; approvalHeader: string | null; json: Answer }> {
  const response = await fetch(`${dev.info.url}/v1/embeddings`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${tokens[caller]}`,
      'content-type': 'application/json',
      'x-veil-operation': operation,
      ...(options.approval ? { 'x-veil-approval': options.approval } : {}),
    },
    body: JSON.stringify({ model: 'demo', input: options.input ?? ['reindex the quarterly notes'] }),
  });
  return {
    status: response.status,
    approvalHeader: response.headers.get('x-veil-approval'),
    json: (await response.json()) as Answer,
  };
}

/** The name of the next approval that shows up as pending, as `veil approvals list --dev --pending` prints it. */
async function nextPending(): Promise<string> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const { io, out } = capture();
    assert.equal(await runApprovalsList(['--pending', ...devArgs(tokens.bob as string)], io), 0);
    const name = out
      .slice(1)
      .map((line) => line.split(/\s+/)[0] as string)
      .find((n) => n.startsWith('ea-') && !seen.has(n));
    if (name) {
      seen.add(name);
      return name;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error('no approval was opened');
}

async function decide(
  decision: 'approve' | 'deny',
  name: string,
  token: string,
  reason = 'planned',
): Promise<{ approval: Approval; out: string[] }> {
  const { io, out } = capture();
  const approval = await runApprovalsDecide(decision, [name, '--reason', reason, ...devArgs(token)], io);
  return { approval, out };
}

async function refusal(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof CliError, String(error));
    return error.message;
  }
  return assert.fail('expected a refusal');
}

/** Requests answered as held so far (`veil_requests_total`, outcome held), as dev's admin port counts them. */
async function heldRequestsCounted(): Promise<number> {
  const metrics = await (await fetch(`${dev.info.adminUrl}/metrics`)).text();
  const counted = /^veil_requests_total\{[^}]*outcome="held"[^}]*\} (\d+)$/m.exec(metrics);
  return Number(counted?.[1] ?? 0);
}

/** Waits for the hold of a caller that hung up to end: the sidecar counts the request once it has. */
async function heldRequestEnded(countedBefore: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if ((await heldRequestsCounted()) > countedBefore) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error('the hold of the caller that hung up did not end');
}

function settled(promise: Promise<unknown>): { done: boolean } {
  const state = { done: false };
  promise.finally(() => {
    state.done = true;
  });
  return state;
}

test('a held request completes once an approver approves it with the CLI', async () => {
  const held = embed('alice', 'one');
  const name = await nextPending();

  const { io, out } = capture({ VEIL_APPROVER_TOKEN: tokens.bob as string });
  assert.equal(await runApprovalsShow([name, '--dev', '--state', state], io), 0);
  assert.ok(out.includes(`Approval:   local/${name}`), out.join('\n'));
  assert.ok(out.includes('Phase:      Pending'), out.join('\n'));
  assert.ok(
    out.some((line) => line.startsWith('Requester:  alice (issuer http://127.0.0.1:')),
    out.join('\n'),
  );
  assert.ok(out.includes('Held by:    policy default, rule one, pod local/veil-dev'), out.join('\n'));
  assert.ok(out.some((line) => /^Request: {4}openai demo, 1 inputs, \d+ bytes, operation one$/.test(line)));
  assert.ok(
    out.includes('Needs:      1 distinct approver(s) from ml-approvers; the requester never approves'),
    out.join('\n'),
  );

  const decided = await decide('approve', name, tokens.bob as string, 'planned re-index');
  assert.match(decided.out[0] ?? '', new RegExp(`^Approved local/${name} as bob at \\d{4}-.*Z\\.$`));
  assert.equal(decided.out[1], 'Phase: Approved (1 of 1 approvals).');

  const answer = await held;
  assert.equal(answer.status, 200, JSON.stringify(answer.json));
  assert.ok((answer.json.data?.[0]?.embedding.length ?? 0) > 0);

  const { io: listIo, out: listed } = capture();
  await runApprovalsList([...devArgs(tokens.bob as string)], listIo);
  assert.match(listed[0] ?? '', /^NAME +PHASE +REQUESTER +MODEL +INPUTS +APPROVALS +EXPIRES$/);
  assert.ok(
    listed.some((line) => new RegExp(`^${name} +Approved +alice +demo +1 +1/1 `).test(line)),
    listed.join('\n'),
  );
});

test('nobody approves their own request, outsiders and proxy tokens are refused', async () => {
  const held = embed('alice', 'one');
  const progress = settled(held);
  const name = await nextPending();

  assert.match(
    await refusal(decide('approve', name, tokens.aliceApprover as string)),
    new RegExp(
      `^approvals approve local/${name} refused: alice requested this call and cannot decide on their own request$`,
    ),
  );
  assert.match(
    await refusal(decide('approve', name, tokens.mallory as string)),
    /refused: mallory is not an approver of this request: it needs a member of ml-approvers$/,
  );
  assert.match(
    await refusal(decide('approve', name, tokens.alice as string)),
    /^approvals approve: veil dev refused the approver token: the token is not an approver token \(audience veil-dev-approvals\): mint one with `npx veil dev token --approver`$/,
  );
  assert.equal(progress.done, false, 'still held');

  const { io, out } = capture();
  await runApprovalsShow([name, ...devArgs(tokens.bob as string)], io);
  assert.ok(out.includes('Decisions:  none yet'), 'refused decisions are not recorded');

  await decide('approve', name, tokens.bob as string);
  assert.equal((await held).status, 200);
});

test('two approvals need two distinct approvers', async () => {
  const held = embed('alice', 'two');
  const progress = settled(held);
  const name = await nextPending();

  const first = await decide('approve', name, tokens.bob as string);
  assert.equal(first.out[1], 'Phase: Pending (1 of 2 approvals).');
  assert.match(
    await refusal(decide('approve', name, tokens.bob as string, 'again')),
    /refused: bob has already decided on this request; each approver decides once$/,
  );
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(progress.done, false, 'one approver is not enough');

  const second = await decide('approve', name, tokens.dana as string, 'second pair of eyes');
  assert.equal(second.out[1], 'Phase: Approved (2 of 2 approvals).');
  assert.deepEqual(
    second.approval.status.decisions.map((d) => [d.approver, d.groups, d.reason]),
    [
      ['bob', ['ml-approvers'], 'planned'],
      ['dana', ['leads'], 'second pair of eyes'],
    ],
  );
  assert.equal((await held).status, 200);
});

test('a deny ends the hold with 403 in the caller’s dialect', async () => {
  const held = embed('alice', 'one');
  const name = await nextPending();
  const denied = await decide('deny', name, tokens.bob as string, 'not in the change plan');
  assert.match(denied.out[0] ?? '', new RegExp(`^Denied local/${name} as bob at `));
  assert.equal(denied.out[1], 'Phase: Denied (0 of 1 approvals).');

  const answer = await held;
  assert.equal(answer.status, 403);
  assert.deepEqual(answer.json, {
    error: {
      message: `approval local/${name} was denied by bob`,
      type: 'permission_error',
      param: null,
      code: 'forbidden',
    },
  });
  assert.match(
    await refusal(decide('approve', name, tokens.dana as string)),
    /refused: the approval is already Denied; no further decisions are taken$/,
  );
});

test('deferred: 202 with the id, then a retry with x-veil-approval by the same caller and payload only', async () => {
  const first = await embed('alice', 'later');
  assert.equal(first.status, 202);
  const id = first.json.approval?.id ?? '';
  assert.match(id, /^local\/ea-[0-9a-f]{12}$/);
  assert.equal(first.approvalHeader, id);
  assert.equal(first.json.approval?.status, 'Pending');
  seen.add(id.split('/')[1] as string);

  const early = await embed('alice', 'later', { approval: id });
  assert.equal(early.status, 202, 'not decided yet: told again to come back');

  await decide('approve', id, tokens.bob as string);

  const otherCaller = await embed('carol', 'later', { approval: id });
  assert.equal(otherCaller.status, 403);
  assert.equal(
    otherCaller.json.error?.message,
    `approval ${id} cannot be used: it was granted to another caller`,
  );
  const otherPayload = await embed('alice', 'later', { approval: id, input: ['something else'] });
  assert.equal(otherPayload.status, 403);
  assert.match(otherPayload.json.error?.message ?? '', /granted for another payload/);

  const retry = await embed('alice', 'later', { approval: id });
  assert.equal(retry.status, 200, JSON.stringify(retry.json));
  assert.ok((retry.json.data?.[0]?.embedding.length ?? 0) > 0);

  const replay = await embed('alice', 'later', { approval: id });
  assert.equal(replay.status, 403);
  assert.equal(replay.json.error?.message, `approval ${id} cannot be used: it was already used`);
});

test('a hold that times out answers 403 with the id; approved later, the retry goes through', async () => {
  const answer = await embed('alice', 'brief');
  assert.equal(answer.status, 403);
  assert.equal(answer.json.error?.code, 'approval_required');
  assert.match(answer.json.error?.message ?? '', /was not decided within 1 s/);
  const id = answer.approvalHeader as string;
  assert.match(id, /^local\/ea-/);
  seen.add(id.split('/')[1] as string);

  await decide('approve', id, tokens.bob as string);
  assert.equal((await embed('alice', 'brief', { approval: id })).status, 200);
});

test('a caller that hangs up while held leaves the approval unused, for the same request later', async () => {
  const hangUp = new AbortController();
  const held = fetch(`${dev.info.url}/v1/embeddings`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${tokens.alice}`,
      'content-type': 'application/json',
      'x-veil-operation': 'one',
    },
    body: JSON.stringify({ model: 'demo', input: ['reindex the quarterly notes'] }),
    signal: hangUp.signal,
  });
  const name = await nextPending();
  const heldBefore = await heldRequestsCounted();
  hangUp.abort();
  await assert.rejects(held, { name: 'AbortError' });
  await heldRequestEnded(heldBefore);

  await decide('approve', name, tokens.bob as string);
  // Had the hold gone on, it would have used the approval for nobody.
  const retry = await embed('alice', 'one', { approval: `local/${name}` });
  assert.equal(retry.status, 200, JSON.stringify(retry.json));
});

test('the approver comes from the token only: a body naming one is refused', async () => {
  const held = embed('alice', 'one');
  const name = await nextPending();
  const response = await fetch(`${dev.info.approvals?.url}/v1/approvals/local/${name}/decisions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${tokens.mallory}`, 'content-type': 'application/json' },
    body: JSON.stringify({ decision: 'approve', reason: 'trust me', approver: 'bob' }),
  });
  assert.equal(response.status, 400);
  assert.match(
    ((await response.json()) as { error: string }).error,
    /decision and reason only, not approver: the approver is who the token says/,
  );
  const anonymous = await fetch(`${dev.info.approvals?.url}/v1/approvals`);
  assert.equal(anonymous.status, 401);
  await decide('approve', name, tokens.bob as string);
  assert.equal((await held).status, 200);
});

test('clear errors: no token, no veil dev running, flags that do not go together', async () => {
  const { io } = capture();
  assert.match(
    await refusal(runApprovalsList(['--dev', '--state', state], io)),
    /^an approver token is needed: pass --token TOKEN or set VEIL_APPROVER_TOKEN; mint one with `npx veil dev token --approver --sub bob --groups ml-approvers`$/,
  );
  assert.match(await refusal(runApprovalsList(['--token', 'x'], io)), /--state and --token go with --dev/);
  assert.match(
    await refusal(runApprovalsList(['--dev', '--state', join(root, 'nowhere')], io)),
    /no veil dev state in/,
  );

  // A folder whose veil dev has stopped: its dev.json names a port nobody listens on.
  const stopped = await openDevState(join(root, 'stopped'));
  const port = await freePort();
  await writeDevInfo(stopped.dir, {
    ...dev.info,
    approvals: { url: `http://127.0.0.1:${port}`, audience: 'veil-dev-approvals', namespace: 'local' },
  });
  assert.match(
    await refusal(runApprovalsList(['--dev', '--state', stopped.dir, '--token', 'x'], io)),
    new RegExp(`^veil dev is not running: nothing answers at http://127\\.0\\.0\\.1:${port} `),
  );
  assert.match(
    await refusal(decide('approve', 'ea-000000000000', 'x')),
    /refused the approver token: the token cannot be verified/,
  );

  const { io: emptyIo, out } = capture();
  await runApprovalsList(['--pending', ...devArgs(tokens.bob as string)], emptyIo);
  assert.deepEqual(out, ['No pending approvals in namespace local.']);
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

test('a caller with its quota of approvals Pending is answered 429 in its dialect, not 503; others are not', async () => {
  tokens.erin = await mintDevToken({ sub: 'erin', groups: ['ml-readers'], approver: false, stateDir: state });
  const ids: string[] = [];
  for (let i = 0; i < DEFAULT_MAX_PENDING_PER_CALLER; i++) {
    const held = await embed('erin', 'later');
    assert.equal(held.status, 202);
    ids.push(held.json.approval?.id ?? '');
  }
  const refused = await embed('erin', 'later');
  assert.equal(refused.status, 429, JSON.stringify(refused.json));
  assert.equal(refused.json.error?.code, 'rate_limited');
  assert.match(refused.json.error?.message ?? '', /Pending in local, .*\(approvals\.maxPendingPerCaller\)/);

  const other = await embed('carol', 'later');
  assert.equal(other.status, 202);
  await decide('deny', ids[0] as string, tokens.bob as string);
  const freed = await embed('erin', 'later');
  assert.equal(freed.status, 202);
  for (const id of [...ids, other.json.approval?.id, freed.json.approval?.id]) {
    seen.add(id?.split('/')[1] as string);
  }
});
