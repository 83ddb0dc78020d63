// What a sidecar may do with an approval, wherever it is kept: the controller and
// `veil dev` both answer opens and uses with these functions.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  type ApprovalStatus,
  approvalRuleHash,
  approvalRuleSchema,
  approvalSpecSchema,
  approvalView,
  checkUse,
  expiryDue,
  MAX_APPROVAL_SUMMARY,
  markFailure,
  newApprovalSpec,
  openApprovalSchema,
  openProblems,
  removalDue,
  ruleChangeRefusal,
  type UseApprovalRequest,
  useApprovalSchema,
} from '@veil/core';

const now = new Date('2030-01-01T12:00:00.000Z');
const rule = approvalRuleSchema.parse({
  name: 'bulk',
  when: { minInputs: 100 },
  approvers: { groups: ['approvers'], count: 2 },
  expiresAfterSeconds: 600,
  singleUse: true,
});
const open = openApprovalSchema.parse({
  policy: 'default',
  rule: 'bulk',
  pod: { name: 'embed-0' },
  requester: { issuer: 'https://idp.example.com', subject: 'alice', groups: ['ml'] },
  request: {
    api: 'openai',
    model: 'm',
    inputCount: 500,
    bytes: 9000,
    digest: 'sha256:ab',
    summary: 'x'.repeat(MAX_APPROVAL_SUMMARY),
  },
});
const spec = newApprovalSpec(open, 'ml', rule, now);
const alice: UseApprovalRequest = {
  requester: { issuer: 'https://idp.example.com', subject: 'alice' },
  digest: 'sha256:ab',
  policy: 'default',
  rule: 'bulk',
  request: { api: 'openai', model: 'm', inputCount: 500, bytes: 9000 },
};
const approved: ApprovalStatus = { phase: 'Approved', decisions: [], decidedAt: now.toISOString() };

test('a new approval takes approvers, expiry and single use from the rule, not the sidecar', () => {
  assert.deepEqual(spec.approvers, { groups: ['approvers'], count: 2 });
  assert.equal(spec.expiresAt, '2030-01-01T12:10:00.000Z');
  assert.equal(spec.singleUse, true);
  assert.deepEqual(spec.pod, { namespace: 'ml', name: 'embed-0' });
  assert.equal(spec.rule, 'bulk');
  assert.equal(spec.request.summary?.length, MAX_APPROVAL_SUMMARY);
});

test('the open request is strict: a sidecar cannot name its own approvers', () => {
  const sneaky = openApprovalSchema.safeParse({ ...open, approvers: { groups: ['ml'], count: 1 } });
  assert.equal(sneaky.success, false);
});

test('the open request refuses a summary longer than an approval keeps', () => {
  const long = { ...open.request, summary: 'x'.repeat(MAX_APPROVAL_SUMMARY + 1) };
  assert.equal(openApprovalSchema.safeParse({ ...open, request: long }).success, false);
});

test('an approval names one of the dialects a request is held in, never text of the opener’s choosing', () => {
  for (const api of ['openai', 'tei', 'ollama', 'cohere']) {
    assert.equal(
      openApprovalSchema.safeParse({ ...open, request: { ...open.request, api } }).success,
      true,
      api,
    );
  }
  // Approvers' notifications show the API: free text there could mention a channel or disguise a link.
  for (const api of ['<!channel> <https://evil.example|x>', 'passthrough', 'unknown', 'OpenAI']) {
    const request = { ...open.request, api };
    assert.equal(openApprovalSchema.safeParse({ ...open, request }).success, false, api);
    assert.equal(approvalSpecSchema.safeParse({ ...spec, request }).success, false, api);
  }
});

test('a refused open says which fields are wrong, in words, not as a dump of the schema’s issues', () => {
  const long = { ...open.request, summary: 'x'.repeat(MAX_APPROVAL_SUMMARY + 1), api: 'soap' };
  const parsed = openApprovalSchema.safeParse({ ...open, request: long });
  assert.ok(!parsed.success);
  const message = openProblems(parsed.error);
  assert.match(message, /^request\.api: .+; request\.summary: .*2048/);
  assert.doesNotMatch(message, /[{}[\]\n]|"code"/);
});

test('only a Pending approval past expiresAt is due to expire', () => {
  const later = new Date('2030-01-01T12:10:00.000Z');
  assert.equal(expiryDue(spec, { phase: 'Pending', decisions: [] }, now), false);
  assert.equal(expiryDue(spec, { phase: 'Pending', decisions: [] }, later), true);
  assert.equal(expiryDue(spec, approved, later), false);
});

test('a settled approval is due for removal once kept its time past expiresAt; a Pending one never is', () => {
  const day = 86_400_000;
  const expiry = Date.parse(spec.expiresAt);
  const denied: ApprovalStatus = { phase: 'Denied', decisions: [] };
  const expired: ApprovalStatus = { phase: 'Expired', decisions: [] };
  const at = (ms: number) => new Date(expiry + ms);
  for (const status of [approved, denied, expired]) {
    assert.equal(removalDue(spec, status, at(day - 1), day), false, status.phase);
    assert.equal(removalDue(spec, status, at(day), day), true, status.phase);
  }
  assert.equal(removalDue(spec, { phase: 'Pending', decisions: [] }, at(30 * day), day), false);
  assert.equal(removalDue(spec, approved, at(0), 0), true, 'kept for nothing: removed at expiry');
});

test('an approval is used only by its requester, for its payload, once approved and in time', () => {
  assert.deepEqual(checkUse('a1', { spec, status: approved }, alice, now), { ok: true, markUsed: true });

  const other = checkUse(
    'a1',
    { spec, status: approved },
    { ...alice, requester: { ...alice.requester, subject: 'mallory' } },
    now,
  );
  assert.deepEqual(other.ok ? undefined : [other.status, other.reason], [403, 'identity']);
  const otherIssuer = checkUse(
    'a1',
    { spec, status: approved },
    { ...alice, requester: { issuer: 'https://evil.example', subject: 'alice' } },
    now,
  );
  assert.deepEqual(otherIssuer.ok ? undefined : otherIssuer.reason, 'identity');

  const payload = checkUse('a1', { spec, status: approved }, { ...alice, digest: 'sha256:cd' }, now);
  assert.deepEqual(payload.ok ? undefined : [payload.status, payload.reason], [403, 'digest']);

  const pending = checkUse('a1', { spec, status: { phase: 'Pending', decisions: [] } }, alice, now);
  assert.deepEqual(pending.ok ? undefined : [pending.status, pending.reason, pending.withApproval], [
    409,
    'Pending',
    true,
  ]);

  const late = checkUse('a1', { spec, status: approved }, alice, new Date('2030-01-01T12:10:00.000Z'));
  assert.deepEqual(late.ok ? undefined : [late.status, late.reason], [409, 'Expired']);

  const used = checkUse('a1', { spec, status: { ...approved, usedAt: now.toISOString() } }, alice, now);
  assert.deepEqual(used.ok ? undefined : [used.status, used.reason], [409, 'used']);
  assert.match(used.ok ? '' : used.error, /already used/);
});

test('a use is refused as another payload unless it is what approvers were shown', () => {
  // An opener may write any counts beside the digest of its real payload.
  const differing: [string, UseApprovalRequest][] = [
    ['policy', { ...alice, policy: 'lax' }],
    ['rule', { ...alice, rule: 'small' }],
    ['api', { ...alice, request: { ...alice.request, api: 'cohere' } }],
    ['model', { ...alice, request: { ...alice.request, model: 'm2' } }],
    ['inputCount', { ...alice, request: { ...alice.request, inputCount: 5000 } }],
    ['bytes', { ...alice, request: { ...alice.request, bytes: 900_000 } }],
    ['operation', { ...alice, request: { ...alice.request, operation: 'reindex' } }],
  ];
  for (const [field, presented] of differing) {
    const check = checkUse('a1', { spec, status: approved }, presented, now);
    assert.deepEqual(check.ok ? undefined : [check.status, check.reason], [403, 'digest'], field);
    assert.match(check.ok ? '' : check.error, new RegExp(`another payload \\(${field} differs\\)`));
  }
  // An operation approvers were shown must be presented too.
  const withOperation = { ...spec, request: { ...spec.request, operation: 'reindex' } };
  const missing = checkUse('a1', { spec: withOperation, status: approved }, alice, now);
  assert.deepEqual(missing.ok ? undefined : missing.reason, 'digest');
  const presented = { ...alice, request: { ...alice.request, operation: 'reindex' } };
  assert.equal(checkUse('a1', { spec: withOperation, status: approved }, presented, now).ok, true);
});

test('the use request is strict: one that does not say what it holds is refused', () => {
  assert.equal(useApprovalSchema.safeParse(alice).success, true);
  const { policy: _policy, rule: _rule, request: _request, ...oldShape } = alice;
  assert.equal(useApprovalSchema.safeParse(oldShape).success, false);
  const { bytes: _bytes, ...noBytes } = alice.request;
  assert.equal(useApprovalSchema.safeParse({ ...alice, request: noBytes }).success, false);
  const summary = { ...alice.request, summary: 'x' };
  assert.equal(useApprovalSchema.safeParse({ ...alice, request: summary }).success, false);
});

test('a use whose mark failed is refused only if another use won; otherwise it is to be retried', () => {
  const usedMeanwhile = { spec, status: { ...approved, usedAt: now.toISOString() } };
  const lost = markFailure('a1', usedMeanwhile, alice, now);
  assert.deepEqual([lost.status, lost.reason], [409, 'used']);
  // The API server or a webhook erred, or something else changed the object: nothing was used.
  for (const current of [{ spec, status: approved }, undefined]) {
    const failed = markFailure('a1', current, alice, now);
    assert.deepEqual([failed.status, failed.reason], [503, 'unavailable']);
    assert.match(failed.error, /not used; retry/);
  }
});

test('an approval that is not single use may be used again', () => {
  const reusable = { ...spec, singleUse: false };
  const status = { ...approved, usedAt: now.toISOString() };
  assert.deepEqual(checkUse('a1', { spec: reusable, status }, alice, now), { ok: true, markUsed: false });
});

test('the view carries the decision and the rule as it stands, nothing the sidecar did not send', () => {
  const view = approvalView(
    {
      namespace: 'ml',
      name: 'a1',
      createdAt: now.toISOString(),
      spec,
      status: {
        phase: 'Denied',
        decidedAt: now.toISOString(),
        decisions: [
          { approver: 'bob', groups: ['approvers'], decision: 'deny', reason: 'no', time: now.toISOString() },
        ],
      },
    },
    rule,
  );
  assert.equal(view.phase, 'Denied');
  assert.equal(view.mode, 'hold');
  assert.equal(view.holdTimeoutSeconds, 120);
  assert.deepEqual(view.decisions, [
    { approver: 'bob', decision: 'deny', reason: 'no', time: now.toISOString() },
  ]);
  assert.equal('summary' in view, false);
});

test('a rule hash is of the rule’s content: any change to it shows, key order does not', () => {
  const hash = approvalRuleHash(rule);
  assert.match(hash, /^sha256:[0-9a-f]{64}$/);
  const reordered = approvalRuleSchema.parse({
    singleUse: true,
    expiresAfterSeconds: 600,
    approvers: { count: 2, groups: ['approvers'] },
    when: { minInputs: 100 },
    name: 'bulk',
  });
  assert.equal(approvalRuleHash(reordered), hash);
  const changes = [
    { ...rule, approvers: { groups: ['security'], count: 2 } },
    { ...rule, approvers: { ...rule.approvers, count: 1 } },
    { ...rule, when: { minInputs: 1000 } },
    { ...rule, expiresAfterSeconds: 60 },
    { ...rule, singleUse: false },
  ];
  for (const changed of changes) assert.notEqual(approvalRuleHash(approvalRuleSchema.parse(changed)), hash);
});

test('an approval is usable only under the rule it was opened under; a changed, gone or unrecorded one refuses', () => {
  const recorded = approvalRuleHash(rule);
  assert.equal(ruleChangeRefusal('ea-1', { ...spec, ruleHash: recorded }, rule), undefined);

  const stricter = approvalRuleSchema.parse({ ...rule, approvers: { groups: ['security'], count: 2 } });
  const cases: [string | undefined, typeof rule | undefined, RegExp][] = [
    [recorded, stricter, /rule bulk of EmbeddingPolicy default has changed since approval ea-1 was opened/],
    [recorded, undefined, /rule bulk of EmbeddingPolicy default no longer exists/],
    [undefined, rule, /approval ea-1 does not record which version of rule bulk/],
  ];
  for (const [hash, current, error] of cases) {
    const refusal = ruleChangeRefusal('ea-1', { ...spec, ruleHash: hash }, current);
    assert.equal(refusal?.status, 409);
    assert.equal(refusal?.reason, 'rule');
    assert.equal(refusal?.withApproval, false);
    assert.match(refusal?.error ?? '', error);
  }
});
