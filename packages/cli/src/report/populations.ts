// The populations an auditor samples from, drawn from verified records:
// every request, the denials, every masking action, and the approvals with
// who asked and who decided. Each comes as a table (one row per member) with
// counts per caller identity and per UTC day, the usual strata of a sample.
//
// Requests, denials and masking actions are drawn from `request` records only:
// an approval's own records (`approval.requested`, `approval.decided`) are
// events of an approval, not requests, and counting them would inflate the
// request population an auditor samples from. For the same reason a forwarded
// request's first part is left out once a later record completes it: each
// request is one member, through its full record.
import { type AuditRecord, effectiveRecords, requesterUsernames } from '@veil/core';

/** Outcomes where the caller was refused. */
export const denialOutcomes: readonly AuditRecord['outcome'][] = [
  'denied',
  'unauthenticated',
  'rate_limited',
  'too_large',
  'invalid',
  'approval_denied',
  'approval_expired',
];

export type Cell = string | number | boolean | null;

export type IdentityCount = { issuer: string | null; subject: string | null; count: number };
export type DayCount = { day: string; count: number };

export type Population = {
  name: 'requests' | 'denials' | 'masking-actions' | 'approvals';
  title: string;
  description: string;
  count: number;
  byIdentity: IdentityCount[];
  byDay: DayCount[];
  columns: readonly string[];
  rows: Cell[][];
};

/**
 * A member of a population: its row, and the record whose identity and day
 * it is counted under (for an approval, the record of its requester).
 */
type Member = { record: AuditRecord; row: Cell[] };

export function buildPopulations(verified: readonly AuditRecord[]): Population[] {
  const records = effectiveRecords(verified);
  const requests = records.filter((r) => r.kind === 'request');
  return [
    population(
      'requests',
      'Requests',
      'Every request once, whatever its outcome: its full record, or, for a request a crash cut off at the model, ' +
        "its incomplete first part. An approval's own records are under approvals.",
      names(requestColumns),
      requests.map((record) => ({ record, row: row(requestColumns, record) })),
    ),
    population(
      'denials',
      'Denials',
      `Requests whose outcome refused the caller: ${denialOutcomes.join(', ')}.`,
      names(denialColumns),
      requests
        .filter((r) => denialOutcomes.includes(r.outcome))
        .map((record) => ({ record, row: row(denialColumns, record) })),
    ),
    population(
      'masking-actions',
      'Masking actions',
      'One row per request and masking action: what was found where, never the value.',
      names(maskingColumns),
      requests.flatMap((record) =>
        record.masking.map((action) => ({ record, row: row(maskingColumns, { record, action }) })),
      ),
    ),
    population(
      'approvals',
      'Approvals',
      'One row per approval: who asked, and when; each approve, deny and the expiry with who, when and the reason given; ' +
        'the outcomes of the requests that named it, and every record of it. ' +
        'Where no approval.decided record exists (evidence of older sidecars), the approvers are those its request records name.',
      names(approvalColumns),
      trails(records).map((trail) => ({ record: trail.requester, row: row(approvalColumns, trail) })),
    ),
  ];
}

function population(
  name: Population['name'],
  title: string,
  description: string,
  columns: readonly string[],
  members: readonly Member[],
): Population {
  return {
    name,
    title,
    description,
    count: members.length,
    byIdentity: countByIdentity(members),
    byDay: countByDay(members),
    columns,
    rows: members.map((m) => m.row),
  };
}

function countByIdentity(members: readonly Member[]): IdentityCount[] {
  const counts = new Map<string, IdentityCount>();
  for (const { record } of members) {
    const issuer = record.identity?.issuer ?? null;
    const subject = record.identity?.subject ?? null;
    const key = JSON.stringify([issuer, subject]);
    const entry = counts.get(key) ?? { issuer, subject, count: 0 };
    entry.count += 1;
    counts.set(key, entry);
  }
  return [...counts.values()].sort(
    (a, b) =>
      b.count - a.count ||
      compare(a.issuer ?? '', b.issuer ?? '') ||
      compare(a.subject ?? '', b.subject ?? ''),
  );
}

function countByDay(members: readonly Member[]): DayCount[] {
  const counts = new Map<string, number>();
  for (const { record } of members) {
    const day = record.time.slice(0, 10);
    counts.set(day, (counts.get(day) ?? 0) + 1);
  }
  return [...counts].map(([day, count]) => ({ day, count })).sort((a, b) => compare(a.day, b.day));
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

// ---- rows -------------------------------------------------------------------

/** A column: its CSV/HTML name and how a member fills it, kept side by side so the two cannot drift apart. */
type Column<T> = readonly [name: string, cell: (member: T) => Cell];

const where: Column<AuditRecord>[] = [
  ['id', (r) => r.id],
  ['time', (r) => r.time],
  ['stream', (r) => r.stream],
  ['seq', (r) => r.seq],
];
const issuer: Column<AuditRecord> = ['issuer', (r) => r.identity?.issuer ?? null];
const subject: Column<AuditRecord> = ['subject', (r) => r.identity?.subject ?? null];
const who: Column<AuditRecord>[] = [issuer, subject, ['groups', (r) => r.identity?.groups.join(' ') ?? null]];
const outcome: Column<AuditRecord> = ['outcome', (r) => r.outcome];
const status: Column<AuditRecord> = ['status', (r) => r.status];
const kind: Column<AuditRecord> = ['kind', (r) => r.kind];
const pod: Column<AuditRecord>[] = [
  ['namespace', (r) => r.pod.namespace],
  ['pod', (r) => r.pod.name],
];
const policy: Column<AuditRecord> = ['policy', (r) => r.policy?.name ?? null];
const call: Column<AuditRecord>[] = [
  ['api', (r) => r.api],
  ['route', (r) => r.route],
  ['model', (r) => r.model],
  ['input_count', (r) => r.inputCount],
];
const error: Column<AuditRecord> = ['error', (r) => r.error ?? null];

const requestColumns: Column<AuditRecord>[] = [
  ...where,
  kind,
  // The first part a full record completes: where a sample's request went to the model.
  ['completes', (r) => r.completes ?? null],
  outcome,
  status,
  ...who,
  ...pod,
  policy,
  ['policy_hash', (r) => r.policy?.hash ?? null],
  ...call,
  ['masking_actions', (r) => r.masking.length],
  ['approval_id', (r) => r.approval?.id ?? null],
  ['total_ms', (r) => r.latency.totalMs],
  error,
];

const denialColumns: Column<AuditRecord>[] = [
  ...where,
  outcome,
  status,
  ...who,
  ...pod,
  policy,
  ...call,
  error,
];

type MaskingMember = { record: AuditRecord; action: AuditRecord['masking'][number] };
const ofRecord = ([name, cell]: Column<AuditRecord>): Column<MaskingMember> => [name, (m) => cell(m.record)];

const maskingColumns: Column<MaskingMember>[] = [
  ...[...where, issuer, subject].map(ofRecord),
  ['rule', (m) => m.action.rule],
  ['detector', (m) => m.action.detector],
  ['field', (m) => m.action.field],
  ['operator', (m) => m.action.operator],
  ['scope', (m) => m.action.scope ?? null],
  ['matches', (m) => m.action.count],
];

type Approver = NonNullable<AuditRecord['approval']>['approvers'][number];
type Identity = NonNullable<AuditRecord['identity']>;

/** Everything the verified records say of one approval. */
type Trail = {
  id: string;
  /** Its `approval.requested` record, or else the earliest record naming it: who asked. */
  requester: AuditRecord;
  /** Every record the row is drawn from, earliest first. */
  records: AuditRecord[];
  /** Other streams that also opened an approval of this id. */
  conflicting: string[];
};

/**
 * The records grouped by approval. An approval id is a namespace and a name,
 * unique in one cluster only, and the first segment of a stream is its cluster.
 */
function trails(records: readonly AuditRecord[]): Trail[] {
  const byApproval = new Map<string, AuditRecord[]>();
  for (const record of records) {
    if (record.approval === undefined) continue;
    const key = JSON.stringify([clusterOf(record.stream), record.approval.id]);
    const named = byApproval.get(key) ?? [];
    named.push(record);
    byApproval.set(key, named);
  }
  return [...byApproval.values()].flatMap(trailsOf).sort((a, b) => byTime(a.requester, b.requester));
}

/**
 * Only the pod that opens an approval records `approval.requested`; another pod
 * serving its deferred caller records decisions and the request, so those
 * records join in. Two streams that each opened the same id cannot both be
 * right, and a stream key vouches for its own records only: each opener gets a
 * row of its own, its requester read from its own stream (never from whichever
 * claimed the earlier time), naming the other openers.
 */
function trailsOf(named: AuditRecord[]): Trail[] {
  const ordered = named.sort(byTime);
  const first = ordered[0] as AuditRecord;
  const id = first.approval?.id ?? '';
  const openers = [...new Set(ordered.filter((r) => r.kind === 'approval.requested').map((r) => r.stream))];
  // Evidence of older sidecars: no approval records, so nothing to anchor on but the earliest.
  if (openers.length === 0) return [{ id, requester: first, records: ordered, conflicting: [] }];
  return openers.map((stream) => {
    const own = ordered.filter((r) => r.stream === stream || !openers.includes(r.stream));
    const requester = own.find((r) => r.kind === 'approval.requested' && r.stream === stream) as AuditRecord;
    return { id, requester, records: own, conflicting: openers.filter((s) => s !== stream) };
  });
}

function clusterOf(stream: string): string {
  const slash = stream.indexOf('/');
  return slash < 0 ? stream : stream.slice(0, slash);
}

function byTime(a: AuditRecord, b: AuditRecord): number {
  return compare(a.time, b.time) || compare(a.stream, b.stream) || a.seq - b.seq;
}

const decidedRecords = (trail: Trail, outcome: AuditRecord['outcome']): AuditRecord[] =>
  trail.records.filter((r) => r.kind === 'approval.decided' && r.outcome === outcome);

/**
 * Who approved (or denied), each decision once, earliest first: two sidecars
 * that both observed a decision (a deferred caller retrying through another
 * pod) both record it.
 */
function deciders(trail: Trail, decision: 'approve' | 'deny'): Approver[] {
  const recorded = trail.records.some((r) => r.kind === 'approval.decided');
  const sources = recorded
    ? decidedRecords(trail, decision === 'approve' ? 'allowed' : 'approval_denied')
    : decision === 'approve'
      ? // Older evidence: only the request records' approvers, as each named them.
        trail.records
      : [];
  const seen = new Set<string>();
  const found: Approver[] = [];
  for (const approver of sources.flatMap((r) => r.approval?.approvers ?? [])) {
    const key = JSON.stringify([approver.subject, approver.time]);
    if (seen.has(key)) continue;
    seen.add(key);
    found.push(approver);
  }
  return found.sort((a, b) => compare(a.time, b.time));
}

/** When the approval expired, as its expiry record says. */
function expiredAt(trail: Trail): string | null {
  const [expiry] = decidedRecords(trail, 'approval_expired');
  return expiry === undefined ? null : (expiry.approval?.decidedAt ?? expiry.time);
}

/**
 * `carol at <time>: "<reason>"`, the reason as a JSON string: it is the approver's
 * free text, and quoted and escaped it cannot pass for a separator, another
 * approver or a line of its own. An approver who gave no reason has none shown.
 */
function approverText(a: Approver): string {
  const said = a.reason?.trim() ? `: ${JSON.stringify(a.reason)}` : '';
  return `${a.subject} at ${a.time}${said}`;
}

const asked: Column<Trail>[] = where.map(([name, cell]) => [name, (t: Trail) => cell(t.requester)]);
/**
 * When approvers decided it; an expiry is no decision of theirs (see
 * expired_at). The request a lapsed approval refused carries the sweep's time
 * as `decidedAt` too, so every record of an expiry is left out, not only its own.
 */
const decidedAt = (t: Trail): string | null =>
  t.records
    .filter((r) => r.outcome !== 'approval_expired')
    .map((r) => r.approval?.decidedAt)
    .filter((at): at is string => at !== undefined)
    .sort(compare)[0] ?? null;

const approvalColumns: Column<Trail>[] = [
  ...asked,
  ['approval_id', (t) => t.id],
  ['requester_issuer', (t) => t.requester.identity?.issuer ?? null],
  ['requester_subject', (t) => t.requester.identity?.subject ?? null],
  ['requester_groups', (t) => t.requester.identity?.groups.join(' ') ?? null],
  ['policy', (t) => t.requester.policy?.name ?? null],
  ['model', (t) => t.requester.model],
  ['input_count', (t) => t.requester.inputCount],
  ['requested_at', (t) => t.requester.approval?.requestedAt ?? null],
  ['decided_at', decidedAt],
  ['approver_count', (t) => new Set(deciders(t, 'approve').map((a) => a.subject)).size],
  ['approvers', (t) => deciders(t, 'approve').map(approverText).join('; ')],
  ['denied_by', (t) => deciders(t, 'deny').map(approverText).join('; ')],
  ['expired_at', expiredAt],
  // Nobody may approve their own request: an auditor looks for exactly this.
  [
    'requester_among_approvers',
    (t) => {
      const identity = t.requester.identity;
      return identity !== null && deciders(t, 'approve').some((a) => mayBeRequester(a.subject, identity));
    },
  ],
  [
    'request_outcomes',
    (t) =>
      t.records
        .filter((r) => r.kind === 'request')
        .map((r) => r.outcome)
        .join(' '),
  ],
  ['records', (t) => t.records.map((r) => `${r.stream}:${r.seq}`).join(' ')],
  // The same approval opened in another stream too: one of the rows is false, and the report cannot say which.
  ['conflicting_streams', (t) => t.conflicting.join(' ')],
];

/**
 * Whether an approver's Kubernetes username may be the requester's own: one the
 * webhook refuses whatever its settings (the subject, `<issuer>#<subject>`), or
 * `<prefix>:<subject>`, the usual shape of an OIDC username prefix (`oidc:`).
 * Which prefixes the cluster was told of the report cannot know, and one left
 * out is exactly what lets a requester approve their own request.
 */
function mayBeRequester(approver: string, requester: Identity): boolean {
  return requesterUsernames(requester).includes(approver) || approver.endsWith(`:${requester.subject}`);
}

const names = <T>(columns: readonly Column<T>[]): string[] => columns.map(([name]) => name);
const row = <T>(columns: readonly Column<T>[], member: T): Cell[] => columns.map(([, cell]) => cell(member));
