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
const approval = (approvers: { subject: string; reason?: string }[]) => ({
  id: 'ap-1',
  requestedAt: '2025-06-01T10:00:00.000Z',
  decidedAt: '2025-06-01T10:01:00.000Z',
  approvers: approvers.map((a) => ({ ...a, time: '2025-06-01T10:01:00.000Z' })),
});
/** An approver's free text, with what could pass for a separator or a new line. */
const denyReason = 'no ticket; "urgent"\nis not one';

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
    approval: approval([{ subject: 'carol', reason: denyReason }]),
  }),
  record({ outcome: 'approval_expired', status: 403 }),
  record({ outcome: 'upstream_error', status: 502 }),
  record({ outcome: 'held', status: 202, kind: 'approval.requested' }),
  record({
    identity: bob,
    approval: approval([{ subject: 'carol', reason: 'OPS-12 checked' }, { subject: 'bob' }]),
    masking: [email],
  }),
];

function byName(name: Population['name']): Population {
  const found = buildPopulations(records).find((p) => p.name === name);
  assert.ok(found, name);
  return found;
}

test('requests are every record', () => {
  const requests = byName('requests');
  assert.equal(requests.count, 12);
  assert.equal(requests.rows.length, 12);
  assert.equal(requests.rows[0]?.length, requests.columns.length);
});

test('denials are the refused outcomes only', () => {
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
    ],
  );
});

test('identities are issuer and subject together, most frequent first', () => {
  assert.deepEqual(byName('denials').byIdentity, [
    { issuer: 'https://a.example', subject: 'alice', count: 5 },
    { issuer: null, subject: null, count: 1 },
    { issuer: 'https://b.example', subject: 'bob', count: 1 },
  ]);
});

test('counts per UTC day', () => {
  assert.deepEqual(byName('requests').byDay, [
    { day: '2025-06-01', count: 10 },
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

test('approvals are records with an approval or of kind approval.*, with their approvers and reasons', () => {
  const approvals = byName('approvals');
  assert.equal(approvals.count, 3);
  const column = (name: string) => approvals.columns.indexOf(name);
  assert.deepEqual(
    approvals.rows.map((row) => [
      row[column('kind')],
      row[column('approvers')],
      row[column('requester_among_approvers')],
    ]),
    [
      ['request', `carol at 2025-06-01T10:01:00.000Z: ${JSON.stringify(denyReason)}`, false],
      ['approval.requested', '', false],
      [
        'request',
        'carol at 2025-06-01T10:01:00.000Z: "OPS-12 checked"; bob at 2025-06-01T10:01:00.000Z',
        true,
      ],
    ],
  );
  // The reason is a JSON string: it reads back exactly, whatever the approver wrote.
  const denied = String(approvals.rows[0]?.[column('approvers')]);
  assert.equal(JSON.parse(denied.slice(denied.indexOf(': ') + 2)), denyReason);
  // In the CSV the cell stays one field on one line.
  const csv = csvDocument(approvals.columns, approvals.rows);
  assert.equal(csv.split('\r\n').length, approvals.rows.length + 2);
  assert.ok(csv.includes(`"carol at 2025-06-01T10:01:00.000Z: ""no ticket; \\""urgent\\""\\nis not one"""`));
});
