// The populations an auditor samples from, drawn from verified records:
// every request, the denials, every masking action, and the approvals with
// who approved. Each comes as a table (one row per member) with counts per
// caller identity and per UTC day, the usual strata of a sample.
import type { AuditRecord } from '@veil/core';

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

/** A member of a population: the record it came from and its row. */
type Member = { record: AuditRecord; row: Cell[] };

export function buildPopulations(records: readonly AuditRecord[]): Population[] {
  return [
    population(
      'requests',
      'Requests',
      'Every audit record: one per request, whatever its outcome.',
      names(requestColumns),
      records.map((record) => ({ record, row: row(requestColumns, record) })),
    ),
    population(
      'denials',
      'Denials',
      `Records whose outcome refused the caller: ${denialOutcomes.join(', ')}.`,
      names(denialColumns),
      records
        .filter((r) => denialOutcomes.includes(r.outcome))
        .map((record) => ({ record, row: row(denialColumns, record) })),
    ),
    population(
      'masking-actions',
      'Masking actions',
      'One row per record and masking action: what was found where, never the value.',
      names(maskingColumns),
      records.flatMap((record) =>
        record.masking.map((action) => ({ record, row: row(maskingColumns, { record, action }) })),
      ),
    ),
    population(
      'approvals',
      'Approvals',
      'Records held for approval (with an approval, or of kind approval.*), with their approvers: who, when and the reason each gave.',
      names(approvalColumns),
      records
        .filter((r) => r.approval !== undefined || r.kind.startsWith('approval.'))
        .map((record) => ({ record, row: row(approvalColumns, record) })),
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

/**
 * `carol at <time>: "<reason>"`, the reason as a JSON string: it is the approver's
 * free text, and quoted and escaped it cannot pass for a separator, another
 * approver or a line of its own. An approver who gave no reason has none shown.
 */
function approverText(a: Approver): string {
  const said = a.reason?.trim() ? `: ${JSON.stringify(a.reason)}` : '';
  return `${a.subject} at ${a.time}${said}`;
}

const approvers = (r: AuditRecord): Approver[] => r.approval?.approvers ?? [];

const approvalColumns: Column<AuditRecord>[] = [
  ...where,
  kind,
  outcome,
  ['requester_issuer', (r) => r.identity?.issuer ?? null],
  ['requester_subject', (r) => r.identity?.subject ?? null],
  ['approval_id', (r) => r.approval?.id ?? null],
  ['requested_at', (r) => r.approval?.requestedAt ?? null],
  ['decided_at', (r) => r.approval?.decidedAt ?? null],
  ['approver_count', (r) => approvers(r).length],
  ['approvers', (r) => approvers(r).map(approverText).join('; ')],
  // Nobody may approve their own request: an auditor looks for exactly this.
  [
    'requester_among_approvers',
    (r) => r.identity !== null && approvers(r).some((a) => a.subject === r.identity?.subject),
  ],
];

const names = <T>(columns: readonly Column<T>[]): string[] => columns.map(([name]) => name);
const row = <T>(columns: readonly Column<T>[], member: T): Cell[] => columns.map(([, cell]) => cell(member));
