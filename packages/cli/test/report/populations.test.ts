import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type AuditRecord, type AuditRecordInput, auditRecordSchema } from '@veil/core';
import { csvDocument } from '../../src/report/csv.ts';
import { buildPopulations, type Population } from '../../src/report/populations.ts';

let seq = 0;

function record(fields: Partial<AuditRecordInput>): AuditRecord {
  const n = seq++;
  return auditRecordSchema.parse({
    id: `01JX${String(n).padStart(22, '0')}`,
    time: '2025-06-01T10:00:00.000Z',
    stream: 'c/ns/pod/0',
    seq: n,
    outcome: 'allowed',
    status: 200,
    identity: { issuer: 'https://a.example', subject: 'alice', groups: [] },
    pod: { namespace: 'ns', name: 'p', uid: 'pod' },
    policy: { name: 'default', hash: 'h' },
    api: 'openai',
    route: '/v1/embeddings',
    model: 'm',
    inputCount: 1,
    latency: { totalMs: 1 },
    ...fields,
  });
}

const bob = { issuer: 'https://a.example', subject: 'bob', groups: [] };
const bobElsewhere = { issuer: 'https://b.example', subject: 'bob', groups: [] };
const email = { rule: 'pii', detector: 'email', count: 1, field: 'input[0]', operator: 'redact' } as const;
/** An approval as request records carried it before approvals had records of their own. */
const approval = (id: string, approvers: { subject: string; reason?: string }[]) => ({
  id,
  requestedAt: '2025-06-01T10:00:00.000Z',
  decidedAt: '2025-06-01T10:01:00.000Z',
  approvers: approvers.map((a) => ({ ...a, time: '2025-06-01T10:01:00.000Z' })),
});
/** An approver's free text, with what could pass for a separator or a new line. */
const denyReason = 'no ticket; "urgent"\nis not one';

/**
 * An approval's trail as the sidecar writes it: approval.requested when it is
 * opened, one approval.decided per decision, and the request's own record.
 */
function trail(
  id: string,
  at: string,
  decided: {
    outcome: 'allowed' | 'approval_denied' | 'approval_expired';
    subject?: string;
    reason?: string;
  }[],
  request: { outcome: AuditRecord['outcome']; status: number },
  stream = 'c/ns/pod/0',
): AuditRecord[] {
  const requestedAt = `2025-06-01T${at}:00.000Z`;
  const decidedAt = `2025-06-01T${at}:30.000Z`;
  const approvers = decided
    .filter((d) => d.subject !== undefined)
    .map((d) => ({
      subject: d.subject as string,
      time: decidedAt,
      ...(d.reason ? { reason: d.reason } : {}),
    }));
  return [
    record({
      stream,
      kind: 'approval.requested',
      outcome: 'held',
      status: null,
      time: `2025-06-01T${at}:00.100Z`,
      approval: { id, requestedAt, approvers: [] },
    }),
    ...decided.map((d) =>
      record({
        stream,
        kind: 'approval.decided',
        outcome: d.outcome,
        status: null,
        time: `2025-06-01T${at}:30.100Z`,
        approval: {
          id,
          requestedAt,
          decidedAt,
          approvers: approvers.filter((a) => a.subject === d.subject),
        },
      }),
    ),
    record({
      stream,
      ...request,
      time: `2025-06-01T${at}:00.000Z`,
      // As the sidecar copies the approval's view: decided once no longer pending,
      // an expiry included (its sweep stamps the time).
      approval: { id, requestedAt, approvers, ...(request.outcome === 'held' ? {} : { decidedAt }) },
    }),
  ];
}

const records = [
  record({}),
  record({
    identity: bob,
    time: '2025-06-02T08:00:00.000Z',
    masking: [email, { ...email, detector: 'phone' }],
  }),
  record({ identity: bobElsewhere, outcome: 'denied', status: 403 }),
  record({ identity: null, outcome: 'unauthenticated', status: 401, time: '2025-06-02T09:00:00.000Z' }),
  record({ outcome: 'rate_limited', status: 429 }),
  record({ outcome: 'too_large', status: 413 }),
  record({ outcome: 'invalid', status: 400 }),
  record({
    outcome: 'approval_denied',
    status: 403,
    approval: approval('ap-1', [{ subject: 'carol', reason: denyReason }]),
  }),
  record({ outcome: 'approval_expired', status: 403 }),
  record({ outcome: 'upstream_error', status: 502 }),
  record({
    identity: bob,
    approval: approval('ap-2', [{ subject: 'carol', reason: 'OPS-12 checked' }, { subject: 'bob' }]),
    masking: [email],
  }),
  ...trail('ml/ea-1', '11:00', [{ outcome: 'allowed', subject: 'dave', reason: 'OPS-7' }], {
    outcome: 'allowed',
    status: 200,
  }),
  // Another pod of the cluster observed the same decision (a deferred retry through it).
  record({
    stream: 'c/ns/pod2/0',
    kind: 'approval.decided',
    outcome: 'allowed',
    status: null,
    time: '2025-06-01T11:00:31.000Z',
    approval: {
      id: 'ml/ea-1',
      requestedAt: '2025-06-01T11:00:00.000Z',
      decidedAt: '2025-06-01T11:00:30.000Z',
      approvers: [{ subject: 'dave', time: '2025-06-01T11:00:30.000Z', reason: 'OPS-7' }],
    },
  }),
  ...trail('ml/ea-2', '11:10', [{ outcome: 'approval_denied', subject: 'erin', reason: 'not now' }], {
    outcome: 'approval_denied',
    status: 403,
  }),
  ...trail('ml/ea-3', '11:20', [{ outcome: 'approval_expired' }], {
    outcome: 'approval_expired',
    status: 403,
  }),
  // The same namespace and name in another cluster is another approval, still pending.
  ...trail('ml/ea-1', '11:30', [], { outcome: 'held', status: 202 }, 'd/ns/pod/0'),
];

function byName(name: Population['name']): Population {
  const found = buildPopulations(records).find((p) => p.name === name);
  assert.ok(found, name);
  return found;
}

test("requests are every request record, and none of an approval's own", () => {
  const requests = byName('requests');
  assert.equal(requests.count, 15);
  assert.equal(requests.rows.length, 15);
  assert.equal(requests.rows[0]?.length, requests.columns.length);
  const kind = requests.columns.indexOf('kind');
  assert.deepEqual(new Set(requests.rows.map((row) => row[kind])), new Set(['request']));
});

test('denials are the refused outcomes only, of requests only', () => {
  const denials = byName('denials');
  const outcome = denials.columns.indexOf('outcome');
  assert.deepEqual(
    denials.rows.map((row) => row[outcome]),
    [
      'denied',
      'unauthenticated',
      'rate_limited',
      'too_large',
      'invalid',
      'approval_denied',
      'approval_expired',
      'approval_denied',
      'approval_expired',
    ],
  );
});

test('identities are issuer and subject together, most frequent first', () => {
  assert.deepEqual(byName('denials').byIdentity, [
    { issuer: 'https://a.example', subject: 'alice', count: 7 },
    { issuer: null, subject: null, count: 1 },
    { issuer: 'https://b.example', subject: 'bob', count: 1 },
  ]);
});

test('counts per UTC day', () => {
  assert.deepEqual(byName('requests').byDay, [
    { day: '2025-06-01', count: 13 },
    { day: '2025-06-02', count: 2 },
  ]);
});

test('masking actions are one row per record and action', () => {
  const masking = byName('masking-actions');
  assert.equal(masking.count, 3);
  const detector = masking.columns.indexOf('detector');
  assert.deepEqual(
    masking.rows.map((row) => row[detector]),
    ['email', 'phone', 'email'],
  );
  assert.deepEqual(masking.byIdentity, [{ issuer: 'https://a.example', subject: 'bob', count: 3 }]);
});

test('approvals are one row per approval: requester, each decision with who, when and why, and the outcome', () => {
  const approvals = byName('approvals');
  assert.equal(approvals.count, 6);
  const column = (name: string) => {
    const index = approvals.columns.indexOf(name);
    assert.ok(index >= 0, name);
    return index;
  };
  const pick = (...names: string[]) => approvals.rows.map((row) => names.map((name) => row[column(name)]));
  assert.deepEqual(
    pick(
      'approval_id',
      'stream',
      'requester_subject',
      'approver_count',
      'approvers',
      'denied_by',
      'expired_at',
    ),
    [
      [
        'ap-1',
        'c/ns/pod/0',
        'alice',
        1,
        `carol at 2025-06-01T10:01:00.000Z: ${JSON.stringify(denyReason)}`,
        '',
        null,
      ],
      [
        'ap-2',
        'c/ns/pod/0',
        'bob',
        2,
        'carol at 2025-06-01T10:01:00.000Z: "OPS-12 checked"; bob at 2025-06-01T10:01:00.000Z',
        '',
        null,
      ],
      // Dave's decision was recorded by two pods, and is one decision.
      ['ml/ea-1', 'c/ns/pod/0', 'alice', 1, 'dave at 2025-06-01T11:00:30.000Z: "OPS-7"', '', null],
      ['ml/ea-2', 'c/ns/pod/0', 'alice', 0, '', 'erin at 2025-06-01T11:10:30.000Z: "not now"', null],
      ['ml/ea-3', 'c/ns/pod/0', 'alice', 0, '', '', '2025-06-01T11:20:30.000Z'],
      ['ml/ea-1', 'd/ns/pod/0', 'alice', 0, '', '', null],
    ],
  );
  assert.deepEqual(pick('requested_at', 'decided_at', 'requester_among_approvers', 'request_outcomes'), [
    ['2025-06-01T10:00:00.000Z', '2025-06-01T10:01:00.000Z', false, 'approval_denied'],
    ['2025-06-01T10:00:00.000Z', '2025-06-01T10:01:00.000Z', true, 'allowed'],
    ['2025-06-01T11:00:00.000Z', '2025-06-01T11:00:30.000Z', false, 'allowed'],
    ['2025-06-01T11:10:00.000Z', '2025-06-01T11:10:30.000Z', false, 'approval_denied'],
    // An expiry is no one's decision.
    ['2025-06-01T11:20:00.000Z', null, false, 'approval_expired'],
    ['2025-06-01T11:30:00.000Z', null, false, 'held'],
  ]);
  // The row is anchored on the approval.requested record, and lists every record of the approval.
  const first = approvals.rows[2] ?? [];
  const requested = records.find((r) => r.kind === 'approval.requested' && r.approval?.id === 'ml/ea-1');
  assert.equal(first[column('id')], requested?.id);
  assert.equal(String(first[column('records')]).split(' ').length, 4);
  assert.match(String(first[column('records')]), /c\/ns\/pod2\/0:\d+/);
  assert.deepEqual(approvals.byIdentity, [
    { issuer: 'https://a.example', subject: 'alice', count: 5 },
    { issuer: 'https://a.example', subject: 'bob', count: 1 },
  ]);

  // The reason is a JSON string: it reads back exactly, whatever the approver wrote.
  const denied = String(approvals.rows[0]?.[column('approvers')]);
  assert.equal(JSON.parse(denied.slice(denied.indexOf(': ') + 2)), denyReason);
  // In the CSV the cell stays one field on one line.
  const csv = csvDocument(approvals.columns, approvals.rows);
  assert.equal(csv.split('\r\n').length, approvals.rows.length + 2);
  assert.ok(csv.includes(`"carol at 2025-06-01T10:01:00.000Z: ""no ticket; \\""urgent\\""\\nis not one"""`));
});

test('the requester is among the approvers under any username the cluster may give them', () => {
  // Alice of https://a.example asks each time; the approver is known by their Kubernetes username.
  const approvers = {
    alice: true,
    'https://a.example#alice': true,
    'oidc:alice': true,
    'https://b.example#alice': false,
    malice: false,
    'alice@example.com': false,
  };
  const approvals = buildPopulations(
    Object.keys(approvers).map((subject) =>
      record({ approval: approval(`by ${subject}`, [{ subject: 'carol' }, { subject }]) }),
    ),
  ).find((p) => p.name === 'approvals');
  assert.ok(approvals);
  const id = approvals.columns.indexOf('approval_id');
  const among = approvals.columns.indexOf('requester_among_approvers');
  assert.deepEqual(
    Object.fromEntries(approvals.rows.map((row) => [String(row[id]).slice('by '.length), row[among]])),
    approvers,
  );
});

test("another stream opening the same approval earlier gets a row of its own, not the approval's requester", () => {
  const mallory = { issuer: 'https://a.example', subject: 'mallory', groups: [] };
  // Alice approves her own request (as oidc:alice), which the report must flag.
  const honest = trail('ml/ea-9', '12:00', [{ outcome: 'allowed', subject: 'oidc:alice' }], {
    outcome: 'allowed',
    status: 200,
  });
  // Another pod's key writes an opening of the same id, earlier, in its own stream.
  const forged = trail('ml/ea-9', '11:59', [], { outcome: 'held', status: 202 }, 'c/ns/pod3/0').map((r) => ({
    ...r,
    identity: mallory,
  }));
  const approvals = buildPopulations([...honest, ...forged]).find((p) => p.name === 'approvals');
  assert.ok(approvals);
  const pick = (...names: string[]) =>
    approvals.rows.map((row) => names.map((name) => row[approvals.columns.indexOf(name)]));
  assert.deepEqual(
    pick('stream', 'requester_subject', 'approvers', 'requester_among_approvers', 'conflicting_streams'),
    [
      ['c/ns/pod3/0', 'mallory', '', false, 'c/ns/pod/0'],
      ['c/ns/pod/0', 'alice', 'oidc:alice at 2025-06-01T12:00:30.000Z', true, 'c/ns/pod3/0'],
    ],
  );
});

test('a forwarded request recorded in two parts is one member, through its full record', () => {
  const stream = 's/ns/pod/1';
  const first = record({ stream, outcome: 'incomplete', status: null, masking: [email] });
  const full = record({ stream, completes: first.id, masking: [email] });
  const denied = record({ stream, outcome: 'denied', status: 403 });
  // A crash after this one's first part: it stays, the request's only record.
  const cutOff = record({ stream, outcome: 'incomplete', status: null });
  const populations = buildPopulations([first, denied, full, cutOff]);
  const of = (name: Population['name']) => populations.find((p) => p.name === name);
  const requests = of('requests');
  const seqColumn = requests?.columns.indexOf('seq') ?? -1;
  assert.deepEqual(
    requests?.rows.map((row) => row[seqColumn]),
    [denied.seq, full.seq, cutOff.seq],
  );
  const completesColumn = requests?.columns.indexOf('completes') ?? -1;
  assert.deepEqual(
    requests?.rows.map((row) => row[completesColumn]),
    [null, first.id, null],
  );
  assert.deepEqual(requests?.byIdentity, [{ issuer: 'https://a.example', subject: 'alice', count: 3 }]);
  assert.equal(of('masking-actions')?.count, 1);
  assert.equal(of('denials')?.count, 1);
});
