// The controller's approvals API against the real API server: sidecars open
// approvals with their service-account token, long-poll for the decision an
// approver makes with the CLI, and consume it once for the same caller and payload.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CustomObjectsApi } from '@kubernetes/client-node';
import { GROUP, type PolicySpecInput, policySpecSchema, VERSION } from '@veil/core';
import type { WebhookServer } from '@veil/injector';
import { Agent, request } from 'undici';
import { runApprovalsDecide } from '../../../packages/cli/src/commands/approvals.ts';
import {
  httpsNotifier,
  type Notification,
} from '../../../packages/injector/src/controller/approvals/notification.ts';
import type { ApprovalsApi } from '../../../packages/injector/src/controller/approvals.ts';
import { type ControlPlane, startControlPlane, type User } from '../../harness/index.ts';
import { freshNamespace, installCrds, podToken } from '../kube/support/cluster.ts';
import {
  approvalSpec,
  createApproval,
  createApprovalWithoutStatus,
  deleteApprovalWebhook,
  failApprovalWrites,
  grantApprovalAccess,
  registerApprovalWebhook,
  sidecarToken,
  startApprovalWebhook,
  startTestApprovalsApi,
  testPod,
  waitForApprovalWebhook,
} from './support.ts';

let cp: ControlPlane;
let webhook: WebhookServer | undefined;
let webhookName: string | undefined;
let approvals: ApprovalsApi | undefined;
let bob: User;
let agent: Agent;
let clockOffsetMs = 0;
/** How long the API keeps a settled approval past its expiry. */
const KEEP_FOR_MS = 86_400_000;
/** What the notification endpoint received: real HTTPS POSTs from the API's own notifier. */
const notifications: Notification[] = [];
let receiver: Server | undefined;

const policy: PolicySpecInput = {
  authentication: { oidc: [{ issuer: 'https://idp.example.com', audiences: ['veil'] }] },
  approvals: {
    rules: [
      {
        name: 'bulk',
        when: { minInputs: 100 },
        approvers: { groups: ['approvers'], count: 1 },
        expiresAfterSeconds: 600,
        // Pointed at the test's own HTTPS receiver once it listens.
        notify: { url: 'https://hooks.example.com/services/T000/B000' },
      },
    ],
  },
};

/** The same rule, under a policy letting one requester have two approvals Pending. */
const capped: PolicySpecInput = { ...policy, approvals: { ...policy.approvals, maxPendingPerCaller: 2 } };
/** A policy a test edits between opening an approval and using it; undefined: no valid version known. */
let edited: PolicySpecInput | undefined = policy;
const policies: Record<string, PolicySpecInput> = { default: policy, capped };
/** Whether the API's policy cache is in sync with the API server, for a test to switch. */
let cacheInSync = true;

before(async () => {
  cp = await startControlPlane();
  try {
    await installCrds(cp);
    bob = await cp.addUser('bob', ['approvers']);
    await grantApprovalAccess(cp, ['approvers']);
    webhook = await startApprovalWebhook(cp);
    webhookName = await registerApprovalWebhook(cp, webhook.url);
    await waitForApprovalWebhook(cp, await freshNamespace(cp, 'probe'));
    receiver = await startNotificationReceiver(await cp.issueServingCert('notify-receiver'));
    const rule = policy.approvals?.rules?.[0];
    if (rule?.notify)
      rule.notify.url = `https://127.0.0.1:${(receiver.address() as AddressInfo).port}/services/T000/B000`;
    agent = new Agent({ connect: { ca: await readFile(cp.caCert) } });
    approvals = await startTestApprovalsApi(cp, 'approvals-api', {
      policy: (_namespace, name) => {
        const spec = name === 'edited' ? edited : Object.hasOwn(policies, name) ? policies[name] : undefined;
        return spec ? { name, hash: 'h', spec: policySpecSchema.parse(spec) } : undefined;
      },
      policiesInSync: () => cacheInSync,
      now: () => new Date(Date.now() + clockOffsetMs),
      keepForMs: KEEP_FOR_MS,
      notify: httpsNotifier(agent),
    });
  } catch (error) {
    await teardown();
    throw error;
  }
});

after(teardown);

async function teardown(): Promise<void> {
  await approvals?.close();
  if (webhookName) await deleteApprovalWebhook(cp, webhookName).catch(() => undefined);
  await webhook?.close();
  await agent?.close();
  receiver?.close();
  await cp?.stop();
}

/** A Slack-style incoming webhook: takes JSON POSTs on one path and keeps their bodies. */
async function startNotificationReceiver(cert: { cert: string; key: string }): Promise<Server> {
  const server = createServer(
    { cert: await readFile(cert.cert), key: await readFile(cert.key) },
    async (request, response) => {
      const chunks: Buffer[] = [];
      for await (const chunk of request) chunks.push(chunk as Buffer);
      const json = request.headers['content-type'] === 'application/json';
      if (request.method === 'POST' && request.url === '/services/T000/B000' && json) {
        notifications.push(JSON.parse(Buffer.concat(chunks).toString('utf8')) as Notification);
        response.end('ok');
      } else {
        response.statusCode = 400;
        response.end();
      }
    },
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

/** A call to the approvals API (at `base`, if not the suite's); without a token when `token` is undefined. */
async function call(
  token: string | undefined,
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
  base = approvals?.url,
) {
  const response = await request(`${base}${path}`, {
    method,
    dispatcher: agent,
    headers: {
      ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.statusCode, body: (await response.body.json()) as Record<string, unknown> };
}

const alice = { issuer: 'https://idp.example.com', subject: 'alice', groups: ['ml'] };
const digest = 'sha256:1111111111111111111111111111111111111111111111111111111111111111';

function openBody() {
  return {
    policy: 'default',
    rule: 'bulk',
    pod: { name: 'embed-0' },
    requester: alice,
    request: {
      api: 'openai',
      model: 'text-embedding-3-small',
      inputCount: 250,
      bytes: 4096,
      digest,
      summary: '250 inputs, masked',
    },
  };
}

/** A use of the approval `openBody` opens, as a sidecar holding that request sends it. */
function useBody(requester: { issuer: string; subject: string }, payload = digest) {
  const { api, model, inputCount, bytes } = openBody().request;
  return {
    requester,
    digest: payload,
    policy: 'default',
    rule: 'bulk',
    request: { api, model, inputCount, bytes },
  };
}

test('open, long-poll, approve with the CLI, then use once for the same caller and payload', async () => {
  const namespace = await freshNamespace(cp, 'api');
  const token = await sidecarToken(cp, namespace);
  const opened = await call(token, 'POST', '/v1/approvals', openBody());
  assert.equal(opened.status, 201);
  assert.equal(opened.body.phase, 'Pending');
  const name = String(opened.body.name);

  // Stored with the policy's approvers, never the sidecar's word for them.
  const stored = (await cp.kubeConfig().makeApiClient(CustomObjectsApi).getNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: 'embeddingapprovals',
    name,
  })) as { spec: { approvers: { groups: string[] }; request: { inputCount: number } } };
  assert.deepEqual(stored.spec.approvers.groups, ['approvers']);
  let note: Notification | undefined;
  for (let tries = 0; note === undefined && tries < 100; tries++) {
    note = notifications.find((n) => n.text.includes(`${namespace}/${name}`));
    if (note === undefined) await sleep(50);
  }
  assert.ok(note, 'a notification for the new approval');
  assert.match(note.text, /250 inputs/);
  assert.match(note.text, /text-embedding-3-small/);
  assert.doesNotMatch(note.text, /masked/);

  const polling = call(token, 'GET', `/v1/approvals/${namespace}/${name}?wait=60`);
  await runApprovalsDecide('approve', [`${namespace}/${name}`, '--reason', 'batch reviewed'], {
    out: () => undefined,
    kubeConfig: () => cp.kubeConfig(bob.kubeconfig),
  });
  const decided = await polling;
  assert.equal(decided.status, 200);
  assert.equal(decided.body.phase, 'Approved');
  assert.deepEqual(
    (decided.body.decisions as { approver: string; reason: string }[]).map((d) => [d.approver, d.reason]),
    [['bob', 'batch reviewed']],
  );

  const usePath = `/v1/approvals/${namespace}/${name}/use`;
  const other = await call(token, 'POST', usePath, useBody({ issuer: alice.issuer, subject: 'mallory' }));
  assert.equal(other.status, 403);
  assert.equal(other.body.reason, 'identity');
  const otherPayload = await call(token, 'POST', usePath, useBody(alice, `${digest.slice(0, -1)}2`));
  assert.equal(otherPayload.status, 403);
  assert.equal(otherPayload.body.reason, 'digest');
  // The digest of the real payload beside other counts than approvers were shown.
  const shown = useBody(alice);
  const moreInputs = await call(token, 'POST', usePath, {
    ...shown,
    request: { ...shown.request, inputCount: 25_000 },
  });
  assert.equal(moreInputs.status, 403);
  assert.equal(moreInputs.body.reason, 'digest');
  // A use that does not say what it holds is refused, not taken on the digest alone.
  const oldShape = await call(token, 'POST', usePath, { requester: alice, digest });
  assert.equal(oldShape.status, 400);

  const { groups: _groups, ...who } = alice;
  const used = await call(token, 'POST', usePath, useBody(who));
  assert.equal(used.status, 200);
  assert.ok(used.body.usedAt);
  const again = await call(token, 'POST', usePath, useBody(who));
  assert.equal(again.status, 409);
  assert.equal(again.body.reason, 'used');
});

test('a stale approval expires and cannot be used; other namespaces and strangers are refused', async () => {
  const namespace = await freshNamespace(cp, 'stale');
  const token = await sidecarToken(cp, namespace);
  const opened = await call(token, 'POST', '/v1/approvals', openBody());
  const name = String(opened.body.name);

  const elsewhere = await freshNamespace(cp, 'other');
  const otherToken = await sidecarToken(cp, elsewhere);
  assert.equal((await call(otherToken, 'GET', `/v1/approvals/${namespace}/${name}`)).status, 403);
  assert.equal((await call('not-a-token', 'GET', `/v1/approvals/${namespace}/${name}`)).status, 401);

  clockOffsetMs = 3_600_000;
  try {
    assert.ok(((await approvals?.sweepNow())?.expired ?? 0) >= 1);
  } finally {
    clockOffsetMs = 0;
  }
  const read = await call(token, 'GET', `/v1/approvals/${namespace}/${name}`);
  assert.equal(read.body.phase, 'Expired');
  const { groups: _groups, ...who } = alice;
  const use = await call(token, 'POST', `/v1/approvals/${namespace}/${name}/use`, useBody(who));
  assert.equal(use.status, 409);
  assert.equal(use.body.reason, 'Expired');
});

test('a settled approval is deleted once kept its time past expiry, not before', async () => {
  const namespace = await freshNamespace(cp, 'kept');
  const token = await sidecarToken(cp, namespace);
  const opened = await call(token, 'POST', '/v1/approvals', openBody());
  const name = String(opened.body.name);
  const expiresIn = Date.parse(String(opened.body.expiresAt)) - Date.now();
  const stored = async () => (await call(token, 'GET', `/v1/approvals/${namespace}/${name}`)).status;

  const sweepAt = async (offsetMs: number) => {
    clockOffsetMs = offsetMs;
    try {
      return await approvals?.sweepNow();
    } finally {
      clockOffsetMs = 0;
    }
  };
  // Long past its time, a Pending approval is first expired, never deleted unsettled.
  await sweepAt(expiresIn + 2 * KEEP_FOR_MS);
  assert.equal((await call(token, 'GET', `/v1/approvals/${namespace}/${name}`)).body.phase, 'Expired');
  await sweepAt(expiresIn + KEEP_FOR_MS - 60_000);
  assert.equal(await stored(), 200, 'kept until its time is up');
  const swept = await sweepAt(expiresIn + KEEP_FOR_MS + 60_000);
  assert.ok((swept?.removed ?? 0) >= 1);
  assert.equal(await stored(), 404, 'deleted');
});

test('an open naming an API no sidecar holds requests in is refused, field by field', async () => {
  const namespace = await freshNamespace(cp, 'api-name');
  const token = await sidecarToken(cp, namespace);
  const body = openBody();
  const hostile = { ...body, request: { ...body.request, api: '<!channel> <https://evil.example|Approve>' } };
  const refused = await call(token, 'POST', '/v1/approvals', hostile);
  assert.equal(refused.status, 400);
  assert.match(String(refused.body.error), /^invalid approval request: request\.api: /);
  assert.doesNotMatch(String(refused.body.error), /[{[]/);
});

test('an approval whose first status was never written still expires', async () => {
  const namespace = await freshNamespace(cp, 'bare');
  const token = await sidecarToken(cp, namespace);
  const spec = approvalSpec({
    pod: { namespace, name: 'embed-0' },
    expiresAt: new Date(Date.now() + 60_000).toISOString(),
  });
  const name = await createApprovalWithoutStatus(cp, namespace, spec);
  clockOffsetMs = 3_600_000;
  try {
    assert.ok(((await approvals?.sweepNow())?.expired ?? 0) >= 1);
  } finally {
    clockOffsetMs = 0;
  }
  const stored = (await cp.kubeConfig().makeApiClient(CustomObjectsApi).getNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: 'embeddingapprovals',
    name,
  })) as { status?: { phase?: string; decisions?: unknown[] } };
  assert.equal(stored.status?.phase, 'Expired');
  assert.deepEqual(stored.status?.decisions, []);
  assert.equal((await call(token, 'GET', `/v1/approvals/${namespace}/${name}`)).body.phase, 'Expired');
});

test('a write the API server fails neither spends an approval nor leaves one half made', async () => {
  const namespace = await freshNamespace(cp, 'down');
  const token = await sidecarToken(cp, namespace);
  const opened = await call(token, 'POST', '/v1/approvals', openBody());
  const name = String(opened.body.name);
  await runApprovalsDecide('approve', [`${namespace}/${name}`, '--reason', 'fine'], {
    out: () => undefined,
    kubeConfig: () => cp.kubeConfig(bob.kubeconfig),
  });
  const usePath = `/v1/approvals/${namespace}/${name}/use`;
  const { groups: _groups, ...who } = alice;
  const listOpened = async () =>
    (
      (await cp.kubeConfig().makeApiClient(CustomObjectsApi).listNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace,
        plural: 'embeddingapprovals',
        labelSelector: 'veil.dev/policy=default',
      })) as { items: { metadata: { name: string } }[] }
    ).items.map((item) => item.metadata.name);

  const restore = await failApprovalWrites(cp, namespace);
  try {
    // Nothing was used: the sidecar is told to retry, not that it was used already.
    const failed = await call(token, 'POST', usePath, useBody(who));
    assert.equal(failed.status, 503, JSON.stringify(failed.body));
    assert.equal(failed.body.reason, 'unavailable');
    // An approval whose status cannot be written is not left behind.
    const unopened = await call(token, 'POST', '/v1/approvals', openBody());
    assert.ok(unopened.status >= 500, JSON.stringify(unopened.body));
    assert.deepEqual(await listOpened(), [name]);
  } finally {
    await restore();
  }
  const used = await call(token, 'POST', usePath, useBody(who));
  assert.equal(used.status, 200, JSON.stringify(used.body));
  assert.ok(used.body.usedAt);
});

test('one requester has at most maxPendingPerCaller approvals Pending in a namespace; beyond, 429', async () => {
  const namespace = await freshNamespace(cp, 'quota');
  const token = await sidecarToken(cp, namespace);
  const open = (requester = alice) =>
    call(token, 'POST', '/v1/approvals', { ...openBody(), policy: 'capped', requester });
  const first = await open();
  assert.equal(first.status, 201);
  assert.equal((await open()).status, 201);

  const refused = await open();
  assert.equal(refused.status, 429);
  assert.match(
    String(refused.body.error),
    /2 approval\(s\) Pending .*allows 2 \(approvals\.maxPendingPerCaller\)/,
  );
  // Other requesters of the namespace are not held back: another subject, or the same one elsewhere.
  assert.equal((await open({ ...alice, subject: 'carol' })).status, 201);
  assert.equal((await open({ ...alice, issuer: 'https://other.example.com' })).status, 201);
  const stored = (await cp.kubeConfig().makeApiClient(CustomObjectsApi).listNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: 'embeddingapprovals',
  })) as { items: unknown[] };
  assert.equal(stored.items.length, 4, 'nothing is created for a refused open');

  // A decision frees a place; so does an expiry.
  await runApprovalsDecide('approve', [`${namespace}/${first.body.name}`, '--reason', 'fine'], {
    out: () => undefined,
    kubeConfig: () => cp.kubeConfig(bob.kubeconfig),
  });
  assert.equal((await open()).status, 201);
  assert.equal((await open()).status, 429);
  clockOffsetMs = 3_600_000;
  try {
    assert.equal((await open()).status, 201);
  } finally {
    clockOffsetMs = 0;
  }
});

test('a percent-encoded path is checked as the route it matches: 401 without a token, no handler reached', async () => {
  const namespace = await freshNamespace(cp, 'encoded');
  const name = await createApproval(cp, namespace, approvalSpec({ pod: { namespace, name: 'embed-0' } }));
  const { groups: _groups, ...who } = alice;
  const encoded: ['GET' | 'POST', string, unknown][] = [
    ['GET', `/%761/approvals/${namespace}/${name}`, undefined],
    ['GET', `/v1/%61pprovals/${namespace}/${name}`, undefined],
    ['POST', '/%761/approvals', {}],
    ['POST', `/v1/approvals/${namespace}/${name}/%75se`, useBody(who)],
  ];
  for (const [method, path, body] of encoded) {
    const answer = await call(undefined, method, path, body);
    assert.equal(answer.status, 401, `${method} ${path}: ${JSON.stringify(answer.body)}`);
    assert.equal(answer.body.error, 'a service-account token is required');
  }
  // A route the encoding names is served as itself once a token is presented.
  const token = await sidecarToken(cp, namespace);
  const read = await call(token, 'GET', `/%761/approvals/${namespace}/${name}`);
  assert.equal(read.status, 200, JSON.stringify(read.body));
  assert.equal(read.body.phase, 'Pending');
});

test("only an injected pod's bound token may call; an approval names that pod, and any injected pod of the namespace may use it", async () => {
  const namespace = await freshNamespace(cp, 'podbound');
  const opener = await testPod(cp, namespace);
  const token = await podToken(cp, opener);
  const opened = await call(token, 'POST', '/v1/approvals', { ...openBody(), pod: { name: 'payments-0' } });
  assert.equal(opened.status, 201, JSON.stringify(opened.body));
  const name = String(opened.body.name);
  const stored = (await cp.kubeConfig().makeApiClient(CustomObjectsApi).getNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: 'embeddingapprovals',
    name,
  })) as { spec: { pod: { namespace: string; name: string } } };
  assert.deepEqual(stored.spec.pod, { namespace, name: opener.metadata?.name });

  const { groups: _groups, ...who } = alice;
  const unbound = await podToken(cp, opener, false);
  const plain = await podToken(cp, await testPod(cp, namespace, false));
  const refusals: [string, string, RegExp][] = [
    ['unbound', unbound, /the token is not bound to a pod/],
    ['not injected', plain, /is not an injected pod/],
  ];
  for (const [what, stranger, error] of refusals) {
    const answers = [
      await call(stranger, 'POST', '/v1/approvals', openBody()),
      await call(stranger, 'GET', `/v1/approvals/${namespace}/${name}`),
      await call(stranger, 'POST', `/v1/approvals/${namespace}/${name}/use`, useBody(who)),
    ];
    for (const answer of answers) {
      assert.equal(answer.status, 403, `${what}: ${JSON.stringify(answer.body)}`);
      assert.match(String(answer.body.error), error);
    }
  }

  await runApprovalsDecide('approve', [`${namespace}/${name}`, '--reason', 'fine'], {
    out: () => undefined,
    kubeConfig: () => cp.kubeConfig(bob.kubeconfig),
  });
  // The retry after a restart comes from another pod of the Deployment.
  const successor = await sidecarToken(cp, namespace);
  assert.equal((await call(successor, 'GET', `/v1/approvals/${namespace}/${name}`)).body.phase, 'Approved');
  const used = await call(successor, 'POST', `/v1/approvals/${namespace}/${name}/use`, useBody(who));
  assert.equal(used.status, 200, JSON.stringify(used.body));
});

test('an approval is used only under the rule it was opened under', async () => {
  const namespace = await freshNamespace(cp, 'rulehash');
  const token = await sidecarToken(cp, namespace);
  const bulk = { name: 'bulk', when: { minInputs: 100 }, approvers: { groups: ['approvers'], count: 1 } };
  const original: PolicySpecInput = { ...policy, approvals: { rules: [bulk] } };
  edited = original;
  const { groups: _groups, ...who } = alice;
  const openApproved = async (subject: string): Promise<string> => {
    const opened = await call(token, 'POST', '/v1/approvals', {
      ...openBody(),
      policy: 'edited',
      requester: { ...alice, subject },
    });
    assert.equal(opened.status, 201, JSON.stringify(opened.body));
    const name = String(opened.body.name);
    await runApprovalsDecide('approve', [`${namespace}/${name}`, '--reason', 'fine'], {
      out: () => undefined,
      kubeConfig: () => cp.kubeConfig(bob.kubeconfig),
    });
    return name;
  };
  const use = (name: string, subject: string) =>
    call(token, 'POST', `/v1/approvals/${namespace}/${name}/use`, {
      ...useBody({ ...who, subject }),
      policy: 'edited',
    });
  const first = await openApproved('alice');
  const second = await openApproved('carol');

  try {
    // v2 of the policy: the same rule name now asks two approvers from security.
    edited = {
      ...policy,
      approvals: { rules: [{ ...bulk, approvers: { groups: ['security'], count: 2 } }] },
    };
    const changed = await use(first, 'alice');
    assert.equal(changed.status, 409, JSON.stringify(changed.body));
    assert.equal(changed.body.reason, 'rule');
    assert.match(String(changed.body.error), /rule bulk of EmbeddingPolicy edited has changed/);

    edited = { ...policy, approvals: { rules: [] } };
    const gone = await use(second, 'carol');
    assert.equal(gone.status, 409, JSON.stringify(gone.body));
    assert.equal(gone.body.reason, 'rule');
    assert.match(String(gone.body.error), /no longer exists/);

    // The rule as it was, defaults spelled out or not, is the rule approvers decided under.
    edited = { ...policy, approvals: { rules: policySpecSchema.parse(original).approvals.rules } };
    assert.equal((await use(first, 'alice')).status, 200);
  } finally {
    edited = policy;
  }
});

test('a Pending approval whose rule changed is marked Expired by the sweep, saying why; a decided one keeps its phase', async () => {
  const namespace = await freshNamespace(cp, 'ruleswept');
  const token = await sidecarToken(cp, namespace);
  const bulk = { name: 'bulk', when: { minInputs: 100 }, approvers: { groups: ['approvers'], count: 1 } };
  edited = { ...policy, approvals: { rules: [bulk] } };
  const open = async (subject: string): Promise<string> => {
    const opened = await call(token, 'POST', '/v1/approvals', {
      ...openBody(),
      policy: 'edited',
      requester: { ...alice, subject },
    });
    assert.equal(opened.status, 201, JSON.stringify(opened.body));
    return String(opened.body.name);
  };
  const stored = async (name: string) =>
    (await cp.kubeConfig().makeApiClient(CustomObjectsApi).getNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace,
      plural: 'embeddingapprovals',
      name,
    })) as { status?: { phase?: string; message?: string } };
  const pending = await open('alice');
  const approved = await open('carol');
  await runApprovalsDecide('approve', [`${namespace}/${approved}`, '--reason', 'fine'], {
    out: () => undefined,
    kubeConfig: () => cp.kubeConfig(bob.kubeconfig),
  });

  try {
    // The rule unchanged, nothing is due.
    await approvals?.sweepNow();
    assert.equal((await stored(pending)).status?.phase, 'Pending');

    edited = {
      ...policy,
      approvals: { rules: [{ ...bulk, approvers: { groups: ['security'], count: 2 } }] },
    };
    assert.ok(((await approvals?.sweepNow())?.expired ?? 0) >= 1);
    const expired = (await stored(pending)).status;
    assert.equal(expired?.phase, 'Expired');
    assert.match(String(expired?.message), /rule bulk of EmbeddingPolicy edited has changed since approval/);
    assert.equal((await stored(approved)).status?.phase, 'Approved');
  } finally {
    edited = policy;
  }
});

test('an approval that records no rule hash (opened before it was recorded) is refused, not used', async () => {
  const namespace = await freshNamespace(cp, 'nohash');
  const token = await sidecarToken(cp, namespace);
  const spec = approvalSpec({ pod: { namespace, name: 'embed-0' } });
  const name = await createApproval(cp, namespace, spec);
  await runApprovalsDecide('approve', [`${namespace}/${name}`, '--reason', 'fine'], {
    out: () => undefined,
    kubeConfig: () => cp.kubeConfig(bob.kubeconfig),
  });
  const { api, model, inputCount, bytes, digest: payload } = spec.request;
  const used = await call(token, 'POST', `/v1/approvals/${namespace}/${name}/use`, {
    requester: { issuer: spec.requester.issuer, subject: spec.requester.subject },
    digest: payload,
    policy: spec.policy,
    rule: spec.rule,
    request: { api, model, inputCount, bytes },
  });
  assert.equal(used.status, 409, JSON.stringify(used.body));
  assert.equal(used.body.reason, 'rule');
  assert.match(String(used.body.error), /does not record which version of rule bulk/);
});

test('a replica that knows no valid version of an existing policy answers 503 to a use; once the policy is gone, 409 rule', async () => {
  const namespace = await freshNamespace(cp, 'rulenone');
  const token = await sidecarToken(cp, namespace);
  const { groups: _groups, ...who } = alice;
  const opened = await call(token, 'POST', '/v1/approvals', { ...openBody(), policy: 'edited' });
  assert.equal(opened.status, 201, JSON.stringify(opened.body));
  const name = String(opened.body.name);
  await runApprovalsDecide('approve', [`${namespace}/${name}`, '--reason', 'fine'], {
    out: () => undefined,
    kubeConfig: () => cp.kubeConfig(bob.kubeconfig),
  });
  const use = () =>
    call(token, 'POST', `/v1/approvals/${namespace}/${name}/use`, { ...useBody(who), policy: 'edited' });
  const objects = cp.kubeConfig().makeApiClient(CustomObjectsApi);
  const where = { group: GROUP, version: VERSION, namespace, plural: 'embeddingpolicies' };
  // The policy exists at the API server, but this replica holds no valid version of it (its latest edit, say).
  await objects.createNamespacedCustomObject({
    ...where,
    body: {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: 'EmbeddingPolicy',
      metadata: { name: 'edited' },
      spec: policySpecSchema.parse(policy),
    },
  });
  edited = undefined;
  try {
    const unknown = await use();
    assert.equal(unknown.status, 503, JSON.stringify(unknown.body));
    assert.match(String(unknown.body.error), /retry/);

    await objects.deleteNamespacedCustomObject({ ...where, name: 'edited' });
    const gone = await use();
    assert.equal(gone.status, 409, JSON.stringify(gone.body));
    assert.equal(gone.body.reason, 'rule');
    assert.match(String(gone.body.error), /no longer exists/);
  } finally {
    edited = policy;
  }
});

test('a replica whose policy cache is out of sync opens and uses no approval: its rule may have changed since', async () => {
  const namespace = await freshNamespace(cp, 'unsynced');
  const token = await sidecarToken(cp, namespace);
  const { groups: _groups, ...who } = alice;
  const opened = await call(token, 'POST', '/v1/approvals', openBody());
  assert.equal(opened.status, 201, JSON.stringify(opened.body));
  const name = String(opened.body.name);
  await runApprovalsDecide('approve', [`${namespace}/${name}`, '--reason', 'fine'], {
    out: () => undefined,
    kubeConfig: () => cp.kubeConfig(bob.kubeconfig),
  });
  cacheInSync = false;
  try {
    const use = await call(token, 'POST', `/v1/approvals/${namespace}/${name}/use`, useBody(who));
    assert.equal(use.status, 503, JSON.stringify(use.body));
    assert.match(String(use.body.error), /retry/);
    const another = await call(token, 'POST', '/v1/approvals', openBody());
    assert.equal(another.status, 503, JSON.stringify(another.body));
    assert.match(String(another.body.error), /not in sync with the API server/);
  } finally {
    cacheInSync = true;
  }
  const used = await call(token, 'POST', `/v1/approvals/${namespace}/${name}/use`, useBody(who));
  assert.equal(used.status, 200, JSON.stringify(used.body));
});

test("a pod's long polls past its share are answered at once as the approval stands; the one held gets the decision", async () => {
  const namespace = await freshNamespace(cp, 'polls');
  const token = await sidecarToken(cp, namespace);
  const opened = await call(token, 'POST', '/v1/approvals', openBody());
  assert.equal(opened.status, 201, JSON.stringify(opened.body));
  const name = String(opened.body.name);
  const narrow = await startTestApprovalsApi(cp, 'approvals-api-polls', {
    policy: (_namespace, name) =>
      name === 'default' ? { name, hash: 'h', spec: policySpecSchema.parse(policy) } : undefined,
    maxLongPollsPerPod: 1,
  });
  try {
    const path = `/v1/approvals/${namespace}/${name}?wait=60`;
    const polls = [
      call(token, 'GET', path, undefined, narrow.url),
      call(token, 'GET', path, undefined, narrow.url),
    ];
    // Held both, neither would answer before its wait is over, still Pending.
    const first = await Promise.race(polls);
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.equal(first.body.phase, 'Pending');
    await runApprovalsDecide('approve', [`${namespace}/${name}`, '--reason', 'fine'], {
      out: () => undefined,
      kubeConfig: () => cp.kubeConfig(bob.kubeconfig),
    });
    const answers = await Promise.all(polls);
    assert.deepEqual(answers.map((answer) => answer.body.phase).sort(), ['Approved', 'Pending']);
  } finally {
    await narrow.close();
  }
});
