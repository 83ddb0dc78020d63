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
      requestColumns,
      records.map((record) => ({ record, row: requestRow(record) })),
    ),
    population(
      'denials',
      'Denials',
      `Records whose outcome refused the caller: ${denialOutcomes.join(', ')}.`,
      denialColumns,
      records
        .filter((r) => denialOutcomes.includes(r.outcome))
        .map((record) => ({ record, row: denialRow(record) })),
    ),
    population(
      'masking-actions',
      'Masking actions',
      'One row per record and masking action: what was found where, never the value.',
      maskingColumns,
      records.flatMap((record) =>
        record.masking.map((action) => ({ record, row: maskingRow(record, action) })),
      ),
    ),
    population(
      'approvals',
      'Approvals',
      'Records held for approval (with an approval, or of kind approval.*), with their approvers: who, when and the reason each gave.',
      approvalColumns,
      records
        .filter((r) => r.approval !== undefined || r.kind.startsWith('approval.'))
        .map((record) => ({ record, row: approvalRow(record) })),
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

const where = ['id', 'time', 'stream', 'seq'] as const;
const who = ['issuer', 'subject', 'groups'] as const;

function whereCells(r: AuditRecord): Cell[] {
  return [r.id, r.time, r.stream, r.seq];
}

function whoCells(r: AuditRecord): Cell[] {
  return [r.identity?.issuer ?? null, r.identity?.subject ?? null, r.identity?.groups.join(' ') ?? null];
}

const requestColumns = [
  ...where,
  'kind',
  'outcome',
  'status',
  ...who,
  'namespace',
  'pod',
  'policy',
  'policy_hash',
  'api',
  'route',
  'model',
  'input_count',
  'masking_actions',
  'approval_id',
  'total_ms',
  'error',
];

function requestRow(r: AuditRecord): Cell[] {
  return [
    ...whereCells(r),
    r.kind,
    r.outcome,
    r.status,
    ...whoCells(r),
    r.pod.namespace,
    r.pod.name,
    r.policy?.name ?? null,
    r.policy?.hash ?? null,
    r.api,
    r.route,
    r.model,
    r.inputCount,
    r.masking.length,
    r.approval?.id ?? null,
    r.latency.totalMs,
    r.error ?? null,
  ];
}

const denialColumns = [
  ...where,
  'outcome',
  'status',
  ...who,
  'namespace',
  'pod',
  'policy',
  'api',
  'route',
  'model',
  'input_count',
  'error',
];

function denialRow(r: AuditRecord): Cell[] {
  return [
    ...whereCells(r),
    r.outcome,
    r.status,
    ...whoCells(r),
    r.pod.namespace,
    r.pod.name,
    r.policy?.name ?? null,
    r.api,
    r.route,
    r.model,
    r.inputCount,
    r.error ?? null,
  ];
}

const maskingColumns = [
  ...where,
  'issuer',
  'subject',
  'rule',
  'detector',
  'field',
  'operator',
  'scope',
  'matches',
];

function maskingRow(r: AuditRecord, action: AuditRecord['masking'][number]): Cell[] {
  return [
    ...whereCells(r),
    r.identity?.issuer ?? null,
    r.identity?.subject ?? null,
    action.rule,
    action.detector,
    action.field,
    action.operator,
    action.scope ?? null,
    action.count,
  ];
}

const approvalColumns = [
  ...where,
  'kind',
  'outcome',
  'requester_issuer',
  'requester_subject',
  'approval_id',
  'requested_at',
  'decided_at',
  'approver_count',
  'approvers',
  'requester_among_approvers',
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

function approvalRow(r: AuditRecord): Cell[] {
  const approvers = r.approval?.approvers ?? [];
  return [
    ...whereCells(r),
    r.kind,
    r.outcome,
    r.identity?.issuer ?? null,
    r.identity?.subject ?? null,
    r.approval?.id ?? null,
    r.approval?.requestedAt ?? null,
    r.approval?.decidedAt ?? null,
    approvers.length,
    approvers.map(approverText).join('; '),
    // Nobody may approve their own request: an auditor looks for exactly this.
    r.identity !== null && approvers.some((a) => a.subject === r.identity?.subject),
  ];
}
