// Just-in-time approvals on the request path, against a stand-in for the
// controller's approvals API: a held request is forwarded only once approved
// and consumed for this caller and payload; everything else is refused in the
// caller's dialect, and every ending is one record naming the approval. The
// approval leaves its own trail before that record: approval.requested when
// opened, one approval.decided per decision observed, each recorded once.
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type AuditRecord, approvalRuleSchema, MAX_APPROVAL_SUMMARY } from '@veil/core';
import { request } from 'undici';
import { type ApprovalsClient, controllerApprovalsClient } from '../../src/approvals/client.ts';
import { RecordedDecisions } from '../../src/approvals/evidence.ts';
import {
  approvalSummary,
  HeldRequests,
  type HoldRequest,
  holdForApproval,
  payloadDigest,
} from '../../src/approvals/hold.ts';
import type { HashKey } from '../../src/hashkey.ts';
import { newTrace } from '../../src/proxy/record.ts';
import { Refusal } from '../../src/proxy/refusal.ts';
import {
  AUDIENCE,
  call,
  closedPortUrl,
  type SidecarFixture,
  startSidecarFixture,
  TEAM,
} from '../fixtures/sidecar.ts';
import {
  type ControllerStandIn,
  type HeldFixture,
  startControllerStandIn,
  startHeldFixture,
} from './controller.ts';

const policy = {
  approvals: {
    rules: [
      {
        name: 'reindex',
        when: { operation: { header: 'x-veil-operation', values: ['reindex'] } },
        approvers: { groups: ['ml-approvers'] },
        holdTimeoutSeconds: 60,
      },
      {
        name: 'quick',
        when: { operation: { header: 'x-veil-operation', values: ['quick'] } },
        approvers: { groups: ['ml-approvers'] },
        holdTimeoutSeconds: 1,
      },
      {
        name: 'later',
        when: { operation: { header: 'x-veil-operation', values: ['later'] } },
        approvers: { groups: ['ml-approvers'] },
        mode: 'deferred' as const,
      },
    ],
  },
};

const secret = 'customer jane.doe@example.com asked about invoice 4411';
const body = { model: 'text-embedding-3-small', input: [secret, 'second', 'third'] };
const url = (fixture: SidecarFixture) => `${fixture.url}/v1/embeddings`;

type OpenAiError = { error: { message: string; code: string; type: string } };

/** The trail since `from`: kind, outcome and status of each record, in seq order. */
function trail(fixture: SidecarFixture, from: number): [AuditRecord['kind'], string, number | null][] {
  return fixture
    .records()
    .slice(from)
    .map((r) => [r.kind, r.outcome, r.status]);
}

/** Once the sidecar following approval `id` has recorded a decision on it. */
async function decidedOnRecord(fixture: SidecarFixture, id: string): Promise<void> {
  const recorded = () =>
    fixture.records().some((r) => r.kind === 'approval.decided' && r.approval?.id === id);
  while (!recorded()) await sleep(10);
}

/** The approvers of an approval record as [subject, reason]. */
const approvers = (record: AuditRecord | undefined) =>
  record?.approval?.approvers.map((a) => [a.subject, a.reason]);

describe('approvals through a controller', () => {
  let controller: ControllerStandIn;
  let fixture: SidecarFixture;
  let dir: string;
  let tokenFile: string;
  let token: string;
  /** The workload's shared key: the sidecar keys its approval digests with it. */
  const hashKey: HashKey = { key: randomBytes(32), shared: true };

  before(async () => {
    controller = await startControllerStandIn();
    dir = await mkdtemp(join(tmpdir(), 'veil-approvals-'));
    tokenFile = join(dir, 'token');
    await writeFile(tokenFile, `${controller.token}\n`);
    await writeFile(join(dir, 'hash-key'), hashKey.key);
    fixture = await startSidecarFixture({
      policy,
      config: {
        approvalsUrl: controller.url,
        controllerTokenFile: tokenFile,
        hashKeyFile: join(dir, 'hash-key'),
      },
    });
    token = await fixture.token();
  });
  after(async () => {
    await fixture?.close();
    await controller?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('holds a request until approved, consumes the approval for this caller and payload, and forwards', async () => {
    const upstreamBefore = fixture.upstreamCalls.length;
    const recordsBefore = fixture.records().length;
    const pending = call(url(fixture), body, { token, headers: { 'x-veil-operation': 'reindex' } });
    const id = await controller.nextOpened();
    // Nothing reaches the model while the request is held.
    assert.equal(fixture.upstreamCalls.length, upstreamBefore);
    controller.decide(id, 'approve', 'bob', 'reindex reviewed');
    const answer = await pending;
    assert.equal(answer.status, 200, answer.text);
    assert.equal(fixture.upstreamCalls.length, upstreamBefore + 1);

    const opened = controller.opened.at(-1);
    assert.ok(opened);
    assert.equal(opened.policy, 'test');
    assert.equal(opened.rule, 'reindex');
    assert.deepEqual(opened.pod, { name: 'embed-0' });
    assert.equal(opened.requester.subject, 'alice');
    assert.deepEqual(opened.requester.groups, [TEAM]);
    assert.equal(opened.request.model, 'text-embedding-3-small');
    assert.equal(opened.request.inputCount, 3);
    assert.equal(opened.request.operation, 'reindex');
    const sent = JSON.stringify(body);
    assert.equal(opened.request.bytes, Buffer.byteLength(sent));
    // The approvers never see the inputs.
    assert.doesNotMatch(JSON.stringify(opened), /jane\.doe|invoice/);
    const identity = {
      issuer: fixture.issuer.issuer,
      subject: 'alice',
      groups: [TEAM],
      kind: 'oidc' as const,
    };
    const scope = { policy: opened.policy, rule: opened.rule, api: 'openai' };
    assert.equal(
      opened.request.digest,
      payloadDigest(scope, identity, 'text-embedding-3-small', sent, hashKey),
    );
    assert.match(opened.request.digest, /^hmac-sha256:[0-9a-f]{64}$/);
    const use = controller.uses.at(-1);
    assert.deepEqual(use, {
      id,
      body: {
        requester: { issuer: fixture.issuer.issuer, subject: 'alice' },
        digest: opened.request.digest,
        // What the request is, checked against what approvers were shown.
        policy: 'test',
        rule: 'reindex',
        request: {
          api: 'openai',
          model: 'text-embedding-3-small',
          inputCount: 3,
          bytes: Buffer.byteLength(sent),
          operation: 'reindex',
        },
      },
    });

    assert.deepEqual(trail(fixture, recordsBefore), [
      ['approval.requested', 'held', null],
      ['approval.decided', 'allowed', null],
      ['request', 'allowed', 200],
    ]);
    const [requested, decided, record] = fixture.records().slice(recordsBefore);
    // Who asked, under which policy, for what: the requester is the caller.
    assert.equal(requested?.identity?.subject, 'alice');
    assert.deepEqual(requested?.identity?.groups, [TEAM]);
    assert.equal(requested?.policy?.name, 'test');
    assert.equal(requested?.policy?.hash, record?.policy?.hash);
    assert.equal(requested?.api, 'openai');
    assert.equal(requested?.route, '/v1/embeddings');
    assert.equal(requested?.model, 'text-embedding-3-small');
    assert.equal(requested?.inputCount, 3);
    assert.equal(requested?.approval?.id, id);
    assert.deepEqual(requested?.approval?.approvers, []);
    assert.equal(requested?.approval?.decidedAt, undefined);
    assert.equal(requested?.inputs, undefined);
    assert.doesNotMatch(JSON.stringify(requested), /jane\.doe|invoice/);

    assert.equal(decided?.identity?.subject, 'alice');
    assert.equal(decided?.approval?.id, id);
    assert.deepEqual(approvers(decided), [['bob', 'reindex reviewed']]);
    assert.ok(decided?.approval?.decidedAt);
    assert.equal(decided?.approval?.requestedAt, requested?.approval?.requestedAt);

    assert.equal(record?.approval?.id, id);
    assert.deepEqual(approvers(record), [['bob', 'reindex reviewed']]);
    assert.ok(record?.approval?.decidedAt);
    assert.ok(record?.approval?.requestedAt);
    assert.ok((record?.latency.approvalMs ?? -1) >= 0);
  });

  it('refuses a denied request 403 in the caller dialect, without calling the model', async () => {
    const upstreamBefore = fixture.upstreamCalls.length;
    const recordsBefore = fixture.records().length;
    const pending = call(
      `${fixture.url}/v2/embed`,
      { model: 'embed-v4', texts: ['x'], input_type: 'search_document' },
      { token, headers: { 'x-veil-operation': 'reindex' } },
    );
    const id = await controller.nextOpened();
    controller.decide(id, 'deny', 'carol', 'not during the freeze');
    const answer = await pending;
    assert.equal(answer.status, 403);
    assert.match((answer.json as { message: string }).message, new RegExp(`${id} was denied by carol`));
    assert.equal(fixture.upstreamCalls.length, upstreamBefore);
    // Nothing was consumed for a denied approval.
    assert.notEqual(controller.uses.at(-1)?.id, id);
    assert.deepEqual(trail(fixture, recordsBefore), [
      ['approval.requested', 'held', null],
      ['approval.decided', 'approval_denied', null],
      ['request', 'approval_denied', 403],
    ]);
    const [requested, decided, record] = fixture.records().slice(recordsBefore);
    assert.equal(requested?.api, 'cohere');
    assert.equal(requested?.model, 'embed-v4');
    assert.deepEqual(approvers(decided), [['carol', 'not during the freeze']]);
    assert.equal(decided?.approval?.id, id);
    assert.equal(record?.api, 'cohere');
    assert.deepEqual(approvers(record), [['carol', 'not during the freeze']]);
  });

  it('on hold timeout answers 403 with the approval id; the same request with x-veil-approval passes once approved', async () => {
    const recordsBefore = fixture.records().length;
    const answer = await call(url(fixture), body, { token, headers: { 'x-veil-operation': 'quick' } });
    const id = await controller.nextOpened();
    assert.equal(answer.status, 403);
    const error = (answer.json as OpenAiError).error;
    assert.equal(error.code, 'approval_required');
    assert.match(error.message, new RegExp(`x-veil-approval: ${id}`));
    assert.equal(answer.headers['x-veil-approval'], id);
    const timedOut = fixture.records().at(-1);
    // Still open to a decision: held, as a caller who hung up is, not refused as expired.
    assert.equal(timedOut?.outcome, 'held');
    assert.equal(timedOut?.approval?.id, id);
    assert.deepEqual(timedOut?.approval?.approvers, []);
    // Nobody decided, and the approval has not expired: no decision to record.
    assert.deepEqual(trail(fixture, recordsBefore), [
      ['approval.requested', 'held', null],
      ['request', 'held', 403],
    ]);

    controller.decide(id, 'approve', 'bob', 'ok');
    const retryFrom = fixture.records().length;
    const upstreamBefore = fixture.upstreamCalls.length;
    const retry = await call(url(fixture), body, {
      token,
      headers: { 'x-veil-operation': 'quick', 'x-veil-approval': id },
    });
    assert.equal(retry.status, 200, retry.text);
    assert.equal(fixture.upstreamCalls.length, upstreamBefore + 1);
    assert.equal(fixture.records().at(-1)?.approval?.id, id);
    // The decision is observed on the retry, and recorded before the request goes on.
    assert.deepEqual(trail(fixture, retryFrom), [
      ['approval.decided', 'allowed', null],
      ['request', 'allowed', 200],
    ]);
    assert.deepEqual(approvers(fixture.records().at(-2)), [['bob', 'ok']]);
  });

  it('an expired approval is refused as expired, the expiry recorded as its decision', async () => {
    const recordsBefore = fixture.records().length;
    const pending = call(url(fixture), body, { token, headers: { 'x-veil-operation': 'reindex' } });
    const id = await controller.nextOpened();
    controller.expire(id);
    const answer = await pending;
    assert.equal(answer.status, 403);
    assert.match((answer.json as OpenAiError).error.message, /expired/);
    assert.deepEqual(trail(fixture, recordsBefore), [
      ['approval.requested', 'held', null],
      ['approval.decided', 'approval_expired', null],
      ['request', 'approval_expired', 403],
    ]);
    const expired = fixture.records().at(-2);
    assert.equal(expired?.approval?.id, id);
    assert.deepEqual(expired?.approval?.approvers, []);
    // The controller keeps no expiry time but the deadline: the record says that.
    assert.ok(expired?.approval?.decidedAt);
    assert.ok(Date.parse(expired.approval.decidedAt) > Date.parse(expired.approval.requestedAt));
  });

  it('deferred: 202 with the approval id at once, then the retry with x-veil-approval is forwarded once', async () => {
    const upstreamBefore = fixture.upstreamCalls.length;
    const recordsBefore = fixture.records().length;
    const answer = await call(url(fixture), body, { token, headers: { 'x-veil-operation': 'later' } });
    const id = await controller.nextOpened();
    assert.equal(answer.status, 202);
    assert.equal(answer.headers['x-veil-approval'], id);
    const json = answer.json as { approval: unknown; message: string };
    assert.deepEqual(json.approval, { id, status: 'Pending' });
    assert.match(json.message, /x-veil-approval/);
    const held = fixture.records().at(-1);
    assert.equal(held?.outcome, 'held');
    assert.equal(held?.status, 202);
    assert.equal(held?.approval?.id, id);
    assert.deepEqual(trail(fixture, recordsBefore), [
      ['approval.requested', 'held', null],
      ['request', 'held', 202],
    ]);
    assert.equal(fixture.records().at(-2)?.approval?.id, id);

    const headers = { 'x-veil-operation': 'later', 'x-veil-approval': id };
    // Still pending: told again to come back.
    const early = await call(url(fixture), body, { token, headers });
    assert.equal(early.status, 202);
    assert.equal(fixture.records().at(-1)?.outcome, 'held');

    controller.decide(id, 'approve', 'bob', 'fine');
    const retry = await call(url(fixture), body, { token, headers });
    assert.equal(retry.status, 200, retry.text);
    assert.equal(fixture.upstreamCalls.length, upstreamBefore + 1);
    const allowed = fixture.records().at(-1);
    assert.equal(allowed?.outcome, 'allowed');
    assert.deepEqual(
      allowed?.approval?.approvers.map((a) => a.subject),
      ['bob'],
    );

    // Single use: the same approval does not pass twice.
    const again = await call(url(fixture), body, { token, headers });
    assert.equal(again.status, 403);
    assert.match((again.json as OpenAiError).error.message, /already used/);
    assert.equal(fixture.records().at(-1)?.outcome, 'approval_denied');
    assert.equal(fixture.upstreamCalls.length, upstreamBefore + 1);

    // Bob's decision was seen by the retry and by the sidecar following the approval, and is on the trail once.
    assert.deepEqual(trail(fixture, recordsBefore), [
      ['approval.requested', 'held', null],
      ['request', 'held', 202],
      ['request', 'held', 202],
      ['approval.decided', 'allowed', null],
      ['request', 'allowed', 200],
      ['request', 'approval_denied', 403],
    ]);
    const decided = fixture.records().at(-3);
    assert.equal(decided?.identity?.subject, 'alice');
    assert.deepEqual(approvers(decided), [['bob', 'fine']]);
  });

  it('a retry refused as still Pending, with no view of the approval to be had, is recorded held', async () => {
    const first = await call(url(fixture), body, { token, headers: { 'x-veil-operation': 'later' } });
    assert.equal(first.status, 202);
    const id = await controller.nextOpened();
    // The refusal comes without the approval, and reading it fails: the sidecar knows only its phase.
    controller.withheld.add(id);
    try {
      const upstreamBefore = fixture.upstreamCalls.length;
      const retry = await call(url(fixture), body, {
        token,
        headers: { 'x-veil-operation': 'later', 'x-veil-approval': id },
      });
      assert.equal(retry.status, 403, retry.text);
      const error = (retry.json as OpenAiError).error;
      assert.equal(error.code, 'approval_required');
      assert.match(error.message, /is not decided yet/);
      assert.equal(retry.headers['x-veil-approval'], id);
      assert.equal(fixture.upstreamCalls.length, upstreamBefore);
      // Nobody denied anything, and it may still be approved: held, not refused.
      const record = fixture.records().at(-1);
      assert.equal(record?.kind, 'request');
      assert.equal(record?.outcome, 'held');
      assert.equal(record?.status, 403);
    } finally {
      controller.withheld.delete(id);
      // Settled, and on the trail, before the next test counts records.
      controller.decide(id, 'deny', 'bob', 'test over');
      await decidedOnRecord(fixture, id);
    }
  });

  it('a late replay of an approval used in time is refused, and records no expiry of it', async () => {
    const first = await call(url(fixture), body, { token, headers: { 'x-veil-operation': 'later' } });
    assert.equal(first.status, 202);
    const id = await controller.nextOpened();
    controller.decide(id, 'approve', 'bob', 'fine');
    const headers = { 'x-veil-operation': 'later', 'x-veil-approval': id };
    assert.equal((await call(url(fixture), body, { token, headers })).status, 200);

    controller.lapse(id);
    const recordsBefore = fixture.records().length;
    const late = await call(url(fixture), body, { token, headers });
    assert.equal(late.status, 403);
    // It was approved and used before its time was up: it never expired undecided.
    assert.deepEqual(trail(fixture, recordsBefore), [['request', 'approval_expired', 403]]);
  });

  it('a use the controller could not mark is answered 503 with Retry-After, and the approval is still good', async () => {
    const first = await call(url(fixture), body, { token, headers: { 'x-veil-operation': 'later' } });
    assert.equal(first.status, 202);
    const id = await controller.nextOpened();
    controller.decide(id, 'approve', 'bob', 'fine');
    await decidedOnRecord(fixture, id);
    const headers = { 'x-veil-operation': 'later', 'x-veil-approval': id };
    const upstreamBefore = fixture.upstreamCalls.length;

    controller.failNextMark();
    const recordsBefore = fixture.records().length;
    const failed = await call(url(fixture), body, { token, headers });
    assert.equal(failed.status, 503, failed.text);
    assert.equal(failed.headers['retry-after'], '5');
    assert.equal((failed.json as OpenAiError).error.code, 'unavailable');
    assert.doesNotMatch((failed.json as OpenAiError).error.message, /already used/);
    assert.equal(fixture.upstreamCalls.length, upstreamBefore);
    assert.deepEqual(trail(fixture, recordsBefore), [['request', 'unavailable', 503]]);

    const retry = await call(url(fixture), body, { token, headers });
    assert.equal(retry.status, 200, retry.text);
    assert.equal(fixture.upstreamCalls.length, upstreamBefore + 1);
  });

  it('cuts a long model name short in the summary approvers are shown', async () => {
    // As long as a model name may be.
    const model = `m-${'x'.repeat(254)}`;
    const answer = await call(
      url(fixture),
      { ...body, model },
      { token, headers: { 'x-veil-operation': 'later' } },
    );
    assert.equal(answer.status, 202, answer.text);
    await controller.nextOpened();
    const opened = controller.opened.at(-1);
    assert.equal(opened?.request.model, model);
    assert.ok((opened?.request.summary?.length ?? Infinity) <= MAX_APPROVAL_SUMMARY);
    assert.match(opened?.request.summary ?? '', /model m-x{198}…/);
  });

  it('refuses an approval granted under another rule: its approvers were chosen for that rule', async () => {
    const first = await call(url(fixture), body, { token, headers: { 'x-veil-operation': 'later' } });
    assert.equal(first.status, 202);
    const id = await controller.nextOpened();
    controller.decide(id, 'approve', 'bob', 'fine');
    const upstreamBefore = fixture.upstreamCalls.length;
    // The same caller and payload, which the stricter `reindex` rule holds.
    const elsewhere = await call(url(fixture), body, {
      token,
      headers: { 'x-veil-operation': 'reindex', 'x-veil-approval': id },
    });
    assert.equal(elsewhere.status, 403, elsewhere.text);
    assert.match((elsewhere.json as OpenAiError).error.message, /another payload/);
    assert.equal(fixture.upstreamCalls.length, upstreamBefore);
    // The follower records bob's approve; in this test, not amid the next one's trail.
    await decidedOnRecord(fixture, id);
  });

  it('refuses an approval whose rule the policy no longer holds, telling the caller to ask anew', async () => {
    const first = await call(url(fixture), body, { token, headers: { 'x-veil-operation': 'later' } });
    assert.equal(first.status, 202);
    const id = await controller.nextOpened();
    controller.decide(id, 'approve', 'bob', 'fine');
    controller.dropRule(id);
    const upstreamBefore = fixture.upstreamCalls.length;
    const retry = await call(url(fixture), body, {
      token,
      headers: { 'x-veil-operation': 'later', 'x-veil-approval': id },
    });
    assert.equal(retry.status, 403, retry.text);
    assert.match(
      (retry.json as OpenAiError).error.message,
      /a version of its rule the policy no longer holds; send the request again without x-veil-approval/,
    );
    assert.equal(fixture.upstreamCalls.length, upstreamBefore);
    // Nobody denied it: the remedy is an expired approval's, to ask anew.
    assert.equal(fixture.records().at(-1)?.outcome, 'approval_expired');
    await decidedOnRecord(fixture, id);
  });

  it('refuses an approval opened directly with made-up counts beside the real digest', async () => {
    // Any workload of the namespace may call the approvals API: it opens an
    // approval for this caller's real payload that shows approvers one input.
    const sent = JSON.stringify(body);
    const identity = {
      issuer: fixture.issuer.issuer,
      subject: 'alice',
      groups: [TEAM],
      kind: 'oidc' as const,
    };
    const scope = { policy: 'test', rule: 'later', api: 'openai' };
    const forged = await fetch(`${controller.url}/v1/approvals`, {
      method: 'POST',
      headers: { authorization: `Bearer ${controller.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        policy: 'test',
        rule: 'later',
        pod: { name: 'embed-0' },
        requester: { issuer: identity.issuer, subject: 'alice', groups: [TEAM] },
        request: {
          api: 'openai',
          model: 'text-embedding-3-small',
          inputCount: 1,
          bytes: Buffer.byteLength(sent),
          operation: 'later',
          digest: payloadDigest(scope, identity, 'text-embedding-3-small', sent, hashKey),
          summary: '1 input(s)',
        },
      }),
    });
    assert.equal(forged.status, 201);
    const id = await controller.nextOpened();
    controller.decide(id, 'approve', 'bob', 'one input is fine');
    const upstreamBefore = fixture.upstreamCalls.length;

    const answer = await call(url(fixture), body, {
      token,
      headers: { 'x-veil-operation': 'later', 'x-veil-approval': id },
    });
    assert.equal(answer.status, 403, answer.text);
    assert.match((answer.json as OpenAiError).error.message, /another payload/);
    assert.equal(fixture.upstreamCalls.length, upstreamBefore);
    const refused = fixture.records().at(-1);
    assert.equal(refused?.outcome, 'approval_denied');
    assert.equal(refused?.approval?.id, id);
  });

  it('fails closed when an approval record cannot be made durable, and records the decision on the next try', async () => {
    const upstreamBefore = fixture.upstreamCalls.length;
    const recordsBefore = fixture.records().length;
    try {
      fixture.sink.failWhen = (draft) => draft.kind === 'approval.requested';
      const unopened = await call(url(fixture), body, { token, headers: { 'x-veil-operation': 'reindex' } });
      await controller.nextOpened();
      assert.equal(unopened.status, 503);
      assert.match((unopened.json as OpenAiError).error.message, /approval could not be recorded/);
      assert.deepEqual(trail(fixture, recordsBefore), [['request', 'unavailable', 503]]);

      fixture.sink.failWhen = (draft) => draft.kind === 'approval.decided';
      const from = fixture.records().length;
      const pending = call(url(fixture), body, { token, headers: { 'x-veil-operation': 'reindex' } });
      const id = await controller.nextOpened();
      controller.decide(id, 'approve', 'bob', 'ok');
      const undecided = await pending;
      assert.equal(undecided.status, 503);
      assert.deepEqual(trail(fixture, from), [
        ['approval.requested', 'held', null],
        ['request', 'unavailable', 503],
      ]);
      // Neither reached the model, and the approval was not spent.
      assert.equal(fixture.upstreamCalls.length, upstreamBefore);
      assert.notEqual(controller.uses.at(-1)?.id, id);

      fixture.sink.failWhen = undefined;
      const retryFrom = fixture.records().length;
      const retry = await call(url(fixture), body, {
        token,
        headers: { 'x-veil-operation': 'reindex', 'x-veil-approval': id },
      });
      assert.equal(retry.status, 200, retry.text);
      assert.deepEqual(trail(fixture, retryFrom), [
        ['approval.decided', 'allowed', null],
        ['request', 'allowed', 200],
      ]);
    } finally {
      fixture.sink.failWhen = undefined;
    }
  });

  it('refuses a malformed x-veil-approval as an invalid request', async () => {
    const answer = await call(url(fixture), body, {
      token,
      headers: { 'x-veil-operation': 'later', 'x-veil-approval': '../../etc' },
    });
    assert.equal(answer.status, 400);
    assert.equal(fixture.records().at(-1)?.outcome, 'invalid');
  });

  it('reads the rotated service-account token on each call', async () => {
    controller.token = 'sidecar-token-2';
    const stale = await call(url(fixture), body, { token, headers: { 'x-veil-operation': 'later' } });
    assert.equal(stale.status, 503);
    await writeFile(tokenFile, 'sidecar-token-2');
    const fresh = await call(url(fixture), body, { token, headers: { 'x-veil-operation': 'later' } });
    assert.equal(fresh.status, 202);
    await controller.nextOpened();
  });
});

// Without the follower, which would record the decision before any replay:
// then a replay recording it too would be hidden by the once-only record.
describe('a replay of an approval, with nobody following it', () => {
  let held: HeldFixture;
  let token: string;

  before(async () => {
    held = await startHeldFixture({ policy, follow: false });
    token = await held.fixture.token();
  });
  after(() => held?.close());

  it('is refused for another caller or another payload, and records no decision', async () => {
    const { fixture, controller } = held;
    const recordsBefore = fixture.records().length;
    const first = await call(url(fixture), body, { token, headers: { 'x-veil-operation': 'later' } });
    assert.equal(first.status, 202);
    const id = await controller.nextOpened();
    controller.decide(id, 'approve', 'bob', 'fine');
    const upstreamBefore = fixture.upstreamCalls.length;
    const headers = { 'x-veil-operation': 'later', 'x-veil-approval': id };

    const mallory = await fixture.token({ sub: 'mallory', aud: AUDIENCE });
    const replay = await call(url(fixture), body, { token: mallory, headers });
    assert.equal(replay.status, 403);
    assert.match((replay.json as OpenAiError).error.message, /another caller/);
    const refused = fixture.records().at(-1);
    assert.equal(refused?.outcome, 'approval_denied');
    assert.equal(refused?.identity?.subject, 'mallory');
    assert.equal(refused?.approval?.id, id);
    // Bob approved alice's request, not mallory's: her record does not name him.
    assert.deepEqual(refused?.approval?.approvers, []);
    assert.equal(refused?.approval?.decidedAt, undefined);

    const swapped = await call(
      url(fixture),
      { ...body, input: ['other', 'payload', 'here'] },
      { token, headers },
    );
    assert.equal(swapped.status, 403);
    assert.match((swapped.json as OpenAiError).error.message, /another payload/);
    assert.equal(fixture.upstreamCalls.length, upstreamBefore);
    assert.deepEqual(fixture.records().at(-1)?.approval?.approvers, []);

    // The genuine caller still can, and its request is the first to record bob's decision.
    const genuine = await call(url(fixture), body, { token, headers });
    assert.equal(genuine.status, 200, genuine.text);
    assert.deepEqual(trail(fixture, recordsBefore), [
      ['approval.requested', 'held', null],
      ['request', 'held', 202],
      ['request', 'approval_denied', 403],
      ['request', 'approval_denied', 403],
      ['approval.decided', 'allowed', null],
      ['request', 'allowed', 200],
    ]);
    assert.equal(fixture.records().at(-2)?.identity?.subject, 'alice');
  });
});

describe("one caller's held requests and Pending approvals are capped", () => {
  let controller: ControllerStandIn;
  let fixture: SidecarFixture;
  let dir: string;
  let token: string;
  const reindex = { 'x-veil-operation': 'reindex' };

  before(async () => {
    controller = await startControllerStandIn();
    dir = await mkdtemp(join(tmpdir(), 'veil-approvals-'));
    await writeFile(join(dir, 'token'), controller.token);
    fixture = await startSidecarFixture({
      policy: { approvals: { ...policy.approvals, maxPendingPerCaller: 2 } },
      config: { approvalsUrl: controller.url, controllerTokenFile: join(dir, 'token') },
    });
    token = await fixture.token();
  });
  after(async () => {
    await fixture?.close();
    await controller?.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** A held request, once its approval is open: its answer is still to come. */
  async function held(callerToken = token, headers = reindex) {
    const answer = call(url(fixture), body, { token: callerToken, headers });
    const answered = new AbortController();
    answer.finally(() => answered.abort()).catch(() => undefined);
    try {
      return { answer, id: await controller.nextOpened(answered.signal) };
    } catch {
      const early = await answer;
      throw new Error(`answered ${early.status} instead of held: ${early.text}`);
    }
  }

  it('refuses a third concurrent hold 429 in dialect, opening nothing; another caller is held; a decision frees a slot', async () => {
    const first = await held();
    const second = await held();
    const openedBefore = controller.opened.length;
    const upstreamBefore = fixture.upstreamCalls.length;

    const third = await call(url(fixture), body, { token, headers: reindex });
    assert.equal(third.status, 429, third.text);
    assert.ok(Number(third.headers['retry-after']) > 0);
    const error = (third.json as OpenAiError).error;
    assert.equal(error.code, 'rate_limited');
    assert.match(error.message, /2 request\(s\) of this caller are held .*maxPendingPerCaller/);
    assert.equal(controller.opened.length, openedBefore);
    const refused = fixture.records().at(-1);
    assert.equal(refused?.outcome, 'rate_limited');
    assert.equal(refused?.status, 429);
    assert.equal(refused?.identity?.subject, 'alice');

    const mallory = await held(await fixture.token({ sub: 'mallory', aud: AUDIENCE }));
    controller.decide(mallory.id, 'approve', 'bob', 'fine');
    assert.equal((await mallory.answer).status, 200);

    controller.decide(first.id, 'approve', 'bob', 'fine');
    assert.equal((await first.answer).status, 200);
    const fourth = await held();
    controller.decide(second.id, 'approve', 'bob', 'fine');
    controller.decide(fourth.id, 'approve', 'bob', 'fine');
    assert.equal((await second.answer).status, 200);
    assert.equal((await fourth.answer).status, 200);
    assert.equal(fixture.upstreamCalls.length, upstreamBefore + 4);
  });

  it('frees the slot of a hold that times out, whose caller hangs up, or that fails', async () => {
    const timedOut = await held(token, { 'x-veil-operation': 'quick' });
    assert.equal((await timedOut.answer).status, 403);

    const gone = new AbortController();
    const hangingUp = request(url(fixture), {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...reindex },
      body: JSON.stringify(body),
      signal: gone.signal,
    }).catch(() => undefined);
    await controller.nextOpened();
    gone.abort();
    await hangingUp;
    while (fixture.records().at(-1)?.status !== 499) await sleep(10);

    fixture.sink.failWhen = (draft) => draft.kind === 'approval.requested';
    try {
      const failed = await held();
      assert.equal((await failed.answer).status, 503);
    } finally {
      fixture.sink.failWhen = undefined;
    }

    // Had any of the three kept its slot, one of these two would be refused.
    const holds = [await held(), await held()];
    for (const { id } of holds) controller.decide(id, 'approve', 'bob', 'fine');
    for (const { answer } of holds) assert.equal((await answer).status, 200);
  });

  it("answers the controller's refusal for the caller's Pending approvals 429, recorded, not 503", async () => {
    // A caller with nothing Pending yet: the holds before left some of alice's.
    const carol = await fixture.token({ sub: 'carol', aud: AUDIENCE });
    controller.maxPending = 1;
    try {
      const later = { 'x-veil-operation': 'later' };
      assert.equal((await call(url(fixture), body, { token: carol, headers: later })).status, 202);
      await controller.nextOpened();

      const refused = await call(url(fixture), body, { token: carol, headers: later });
      assert.equal(refused.status, 429, refused.text);
      assert.ok(Number(refused.headers['retry-after']) > 0);
      const error = (refused.json as OpenAiError).error;
      assert.equal(error.code, 'rate_limited');
      assert.match(error.message, /rule later, but the requester has 1 approval\(s\) Pending/);
      const record = fixture.records().at(-1);
      assert.equal(record?.outcome, 'rate_limited');
      assert.equal(record?.status, 429);

      const mallory = await fixture.token({ sub: 'mallory', aud: AUDIENCE });
      assert.equal((await call(url(fixture), body, { token: mallory, headers: later })).status, 202);
      await controller.nextOpened();
    } finally {
      controller.maxPending = undefined;
    }
  });
});

describe('held requests together keep at most half the body budget', () => {
  const MiB = 1024 * 1024;
  let controller: ControllerStandIn;
  let fixture: SidecarFixture;
  let dir: string;
  const reindex = { 'x-veil-operation': 'reindex' };
  /** `mebibytes` MiB of inputs: a body this large is kept in memory as long as it is held. */
  const large = (mebibytes: number) => ({
    model: 'text-embedding-3-small',
    input: Array.from({ length: mebibytes }, (_, i) => `${i} ${'x'.repeat(MiB - 16)}`),
  });

  before(async () => {
    controller = await startControllerStandIn();
    dir = await mkdtemp(join(tmpdir(), 'veil-approvals-'));
    await writeFile(join(dir, 'token'), controller.token);
    fixture = await startSidecarFixture({
      policy: { ...policy, limits: { maxBytesPerRequest: 6 * MiB } },
      config: { approvalsUrl: controller.url, controllerTokenFile: join(dir, 'token') },
    });
  });
  after(async () => {
    await fixture?.close();
    await controller?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses a hold past the share 429 in dialect, recorded; a caller never held is served; a decision frees it', async () => {
    const alice = await fixture.token();
    const mallory = await fixture.token({ sub: 'mallory', aud: AUDIENCE });
    const carol = await fixture.token({ sub: 'carol', aud: AUDIENCE });
    const first = call(url(fixture), large(5), { token: alice, headers: reindex });
    const firstId = await controller.nextOpened();
    const openedBefore = controller.opened.length;

    // Another caller, under the per-caller cap, with a body that would take held bodies past 8 MiB.
    const refused = await call(url(fixture), large(4), { token: mallory, headers: reindex });
    assert.equal(refused.status, 429, refused.text.slice(0, 300));
    assert.ok(Number(refused.headers['retry-after']) > 0);
    const error = (refused.json as OpenAiError).error;
    assert.equal(error.code, 'rate_limited');
    assert.match(error.message, /held for approval in this proxy keep \d+ bytes .*may keep 8388608 \(half/);
    assert.equal(controller.opened.length, openedBefore);
    const record = fixture.records().at(-1);
    assert.equal(record?.outcome, 'rate_limited');
    assert.equal(record?.identity?.subject, 'mallory');

    const served = await call(url(fixture), large(5), { token: carol });
    assert.equal(served.status, 200, served.text.slice(0, 300));

    controller.decide(firstId, 'approve', 'bob', 'fine');
    assert.equal((await first).status, 200);
    const again = call(url(fixture), large(4), { token: mallory, headers: reindex });
    controller.decide(await controller.nextOpened(), 'approve', 'bob', 'fine');
    assert.equal((await again).status, 200);
  });

  it('counts a chunked body at the bytes it was sent, not at the smaller body it forwards', async () => {
    const alice = await fixture.token();
    const mallory = await fixture.token({ sub: 'mallory', aud: AUDIENCE });
    // 5 MiB sent, without Content-Length; written anew for the model, a few bytes.
    const padded = `{"model":"text-embedding-3-small","input":["held"]${' '.repeat(5 * MiB)}}`;
    const first = request(url(fixture), {
      method: 'POST',
      headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json', ...reindex },
      body: Readable.from([padded]),
    });
    const firstId = await controller.nextOpened();
    const openedBefore = controller.opened.length;

    const second = call(url(fixture), large(4), { token: mallory, headers: reindex });
    // Held past the share, it would open an approval and wait: whichever comes first tells.
    const outcome = await Promise.race([
      second.then((answer) => ({ answer })),
      controller.nextOpened().then((id) => ({ opened: id })),
    ]);
    if ('opened' in outcome) controller.decide(outcome.opened, 'deny', 'bob', 'test over');
    assert.ok('answer' in outcome, 'the second hold was let in past the share');
    assert.equal(outcome.answer.status, 429, outcome.answer.text.slice(0, 300));
    assert.equal(controller.opened.length, openedBefore);

    controller.decide(firstId, 'approve', 'bob', 'fine');
    const answered = await first;
    assert.equal(answered.statusCode, 200, await answered.body.text());
  });
});

describe('approvals without a controller fail closed', () => {
  let fixture: SidecarFixture;
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'veil-approvals-'));
    await writeFile(join(dir, 'token'), 'token');
    fixture = await startSidecarFixture({
      policy,
      config: { approvalsUrl: await closedPortUrl(), controllerTokenFile: join(dir, 'token') },
    });
  });
  after(async () => {
    await fixture?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('answers 503 in the caller dialect when the controller cannot be reached, and forwards nothing', async () => {
    const token = await fixture.token();
    for (const operation of ['reindex', 'later']) {
      const answer = await call(url(fixture), body, { token, headers: { 'x-veil-operation': operation } });
      assert.equal(answer.status, 503);
      const error = (answer.json as OpenAiError).error;
      assert.equal(error.code, 'unavailable');
      assert.match(error.message, /controller could not be reached/);
      const record = fixture.records().at(-1);
      assert.equal(record?.outcome, 'unavailable');
      assert.equal(record?.approval, undefined);
    }
    const presented = await call(url(fixture), body, {
      token,
      headers: { 'x-veil-operation': 'later', 'x-veil-approval': 'test/ea-000001' },
    });
    assert.equal(presented.status, 503);
    assert.equal(fixture.upstreamCalls.length, 0);
    // What no rule holds still flows.
    const plain = await call(url(fixture), body, { token });
    assert.equal(plain.status, 200);
  });
});

describe('the payload digest under the hash key', () => {
  const rule = approvalRuleSchema.parse(policy.approvals.rules[2]);
  const identity = {
    issuer: 'https://idp.example.com',
    subject: 'alice',
    groups: [TEAM],
    kind: 'oidc' as const,
  };
  const model = 'text-embedding-3-small';
  const sent = JSON.stringify(body);
  const scope = { policy: 'test', rule: rule.name, api: 'openai' };
  let controller: ControllerStandIn;
  let dir: string;
  let client: ApprovalsClient;

  before(async () => {
    controller = await startControllerStandIn();
    dir = await mkdtemp(join(tmpdir(), 'veil-approvals-'));
    await writeFile(join(dir, 'token'), controller.token);
    client = await controllerApprovalsClient({ url: controller.url, tokenFile: join(dir, 'token') });
  });
  after(async () => {
    await client?.close();
    await controller?.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** The deferred request of `body` as a sidecar on `hashKey` holds it; with `approval`, its retry. */
  function held(hashKey: HashKey, approval?: string): HoldRequest {
    return {
      client,
      podName: 'embed-0',
      policyName: scope.policy,
      rule,
      api: scope.api,
      identity,
      model,
      inputCount: body.input.length,
      body: sent,
      bodyBytes: Buffer.byteLength(sent),
      headers: {
        'x-veil-operation': 'later',
        ...(approval === undefined ? {} : { 'x-veil-approval': approval }),
      },
      record: async () => undefined,
      decisions: new RecordedDecisions(),
      held: new HeldRequests(1 << 20),
      maxPendingPerCaller: 10,
      hashKey,
    };
  }

  /** Opens an approval for the request on `hashKey`, approves it, and returns its id and digest. */
  async function approved(hashKey: HashKey): Promise<{ id: string; digest: string | undefined }> {
    const answer = await holdForApproval(held(hashKey), newTrace());
    assert.equal(answer?.reply.status, 202);
    const id = await controller.nextOpened();
    controller.decide(id, 'approve', 'bob', 'fine');
    return { id, digest: controller.opened.at(-1)?.request.digest };
  }

  it('is an HMAC under a shared key, used by a retry on the same key only; unkeyed under a key of this process', async () => {
    const shared = { key: randomBytes(32), shared: true };
    const keyed = await approved(shared);
    const message = `${JSON.stringify(['veil-approval-payload/v2', 'test', rule.name, 'openai', identity.issuer, 'alice', model])}\n${sent}`;
    assert.equal(
      keyed.digest,
      `hmac-sha256:${createHmac('sha256', shared.key).update(message).digest('hex')}`,
    );
    assert.notEqual(keyed.digest, payloadDigest(scope, identity, model, sent, { ...shared, shared: false }));
    // A sidecar on another key holds another payload: the guess of a reader without the key.
    await assert.rejects(
      holdForApproval(held({ key: randomBytes(32), shared: true }, keyed.id), newTrace()),
      (error) => error instanceof Refusal && /granted for another payload/.test(error.message),
    );
    assert.equal(await holdForApproval(held(shared, keyed.id), newTrace()), undefined);
    assert.equal((controller.uses.at(-1)?.body as { digest: string }).digest, keyed.digest);

    // A key of this process alone: a retry reaching another replica, on a key of its own, must match.
    const processKey = { key: randomBytes(32), shared: false };
    const unkeyed = await approved(processKey);
    assert.equal(unkeyed.digest, payloadDigest(scope, identity, model, sent, processKey));
    assert.match(unkeyed.digest ?? '', /^sha256:[0-9a-f]{64}$/);
    const otherReplica = { key: randomBytes(32), shared: false };
    assert.equal(await holdForApproval(held(otherReplica, unkeyed.id), newTrace()), undefined);
  });
});

describe('the summary approvers are shown', () => {
  it('stays within what an approval keeps, however long the model name and however the input escapes', () => {
    const trace = newTrace();
    trace.model = 'm'.repeat(10_000);
    trace.inputCount = Number.MAX_SAFE_INTEGER;
    // Control characters are six characters each as JSON.
    trace.inputs = [{ masked: '\u0001'.repeat(10_000) }];
    const summary = approvalSummary(trace, Number.MAX_SAFE_INTEGER);
    assert.ok(summary.length <= MAX_APPROVAL_SUMMARY, `${summary.length} characters`);
    assert.match(summary, /model m+…; first input \(audit-masked\): "(\\u0001)+…"$/);
  });
});
