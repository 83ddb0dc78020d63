// `veil sessions show`: one request's audit record, found by its ULID or by
// `<stream>:<seq>`, laid out for a person to read.
import { type AuditRecord, matchCompletions, type StreamSummary } from '@veil/core';
import { CliError } from '../command.ts';
import { printable } from '../printable.ts';
import type { Verdict } from './verification.ts';

export type SessionRef = { id: string } | { stream: string; seq: number };

const ulidPattern = /^[0-7][0-9A-HJKMNP-TV-Z]{25}$/;

export function parseSessionRef(text: string): SessionRef {
  const upper = text.toUpperCase();
  if (ulidPattern.test(upper)) return { id: upper };
  const colon = text.lastIndexOf(':');
  const seq = text.slice(colon + 1);
  if (colon > 0 && /^\d+$/.test(seq)) return { stream: text.slice(0, colon), seq: Number(seq) };
  throw new CliError(`sessions show: "${text}" is neither a ULID nor <stream>:<seq>`);
}

/**
 * The request's record: the one `ref` names, or, when that is a first part a
 * later record completes, the completing one, which holds all the first did.
 */
export function findRecord(records: readonly AuditRecord[], ref: SessionRef): AuditRecord | undefined {
  const found =
    'id' in ref
      ? onlyRecord(
          records.filter((r) => r.id === ref.id),
          ref.id,
        )
      : records.find((r) => r.stream === ref.stream && r.seq === ref.seq);
  if (found?.outcome !== 'incomplete') return found;
  return matchCompletions(records.filter((r) => r.stream === found.stream)).completedBy.get(found) ?? found;
}

/**
 * A ULID names one request, yet any stream may carry a record of that id: one
 * signed by a key of its own, say. Which is the evidence is the auditor's call,
 * never the listing order's.
 */
function onlyRecord(found: readonly AuditRecord[], id: string): AuditRecord | undefined {
  if (found.length <= 1) return found[0];
  const places = found.map((r) => printable(`${r.stream}:${r.seq}`)).join(', ');
  throw new CliError(
    `sessions show: ${found.length} verified records have id ${id} (${places}): check their streams' keys (veil evidence verify --trusted-keys), then name one as <stream>:<seq>`,
    1,
  );
}

/** What the verification said of the evidence a record was read from. */
export type RecordEvidence = {
  /** The summary of the record's stream. */
  stream: StreamSummary | undefined;
  /** The verdict on the whole evidence set: a record of a sound stream in a failed set is no pass. */
  verdict: Verdict;
  /** Whether the stream keys were checked against keys the auditor trusts. */
  keysPinned: boolean;
};

/** The `evidence` line: whether the record may be relied on, and how far it was checked. */
export function evidenceLine(evidence: RecordEvidence): string {
  const verdict = !evidence.stream?.valid
    ? 'its stream has INVALID findings: run veil evidence verify'
    : evidence.verdict === 'INVALID'
      ? 'its stream verified, but the evidence has INVALID findings: run veil evidence verify'
      : 'its stream verified';
  return evidence.keysPinned ? verdict : `${verdict} (keys not pinned: pass --trusted-keys)`;
}

/** The record as aligned `key  value` lines, then its masking actions and its approval. */
export function renderRecord(record: AuditRecord, evidence: RecordEvidence): string[] {
  const r = record;
  const fields: [string, string][] = [
    ['id', r.id],
    ['time', r.time],
    ['stream', r.stream],
    ['seq', String(r.seq)],
    ['kind', r.kind],
    ...(r.completes
      ? [
          ['completes', `${r.completes}, its first part, recorded as it went to the model`] as [
            string,
            string,
          ],
        ]
      : []),
    ['outcome', r.outcome],
    ['status', r.status === null ? 'none sent' : String(r.status)],
    ['caller', r.identity ? `${r.identity.subject} (issuer ${r.identity.issuer})` : 'unauthenticated'],
    ['groups', r.identity?.groups.join(', ') || '-'],
    ['pod', `${r.pod.namespace}/${r.pod.name} (uid ${r.pod.uid})`],
    ['policy', r.policy ? `${r.policy.name} ${r.policy.hash}` : 'none (no valid policy)'],
    ['api', `${r.api} ${r.route}`],
    ['model', r.model ?? '-'],
    ['inputs', String(r.inputCount)],
    ...(r.inputs ?? []).map((input, index): [string, string] => [
      `  input ${index}`,
      'digest' in input ? `digest ${input.digest}` : `masked ${shorten(input.masked)}`,
    ]),
    ['latency', latency(r.latency)],
    ['vectors', r.vectors ? `${r.vectors.count} × ${r.vectors.dimensions}, digest ${r.vectors.digest}` : '-'],
    ...(r.error ? [['error', r.error] as [string, string]] : []),
    ['evidence', evidenceLine(evidence)],
  ];
  const lines = aligned(fields.map(([k, v]) => [k, v]));
  lines.push('');
  if (r.masking.length === 0) {
    lines.push('masking: none');
  } else {
    lines.push(`masking: ${r.masking.length} action(s)`);
    lines.push(
      ...aligned(
        [
          ['rule', 'detector', 'field', 'operator', 'scope', 'matches'],
          ...r.masking.map((m) => [m.rule, m.detector, m.field, m.operator, m.scope ?? '-', String(m.count)]),
        ],
        '  ',
      ),
    );
  }
  if (r.approval) {
    const a = r.approval;
    lines.push('', `approval ${printable(a.id)}`);
    lines.push(
      ...aligned(
        [
          ['requested', a.requestedAt],
          ['decided', a.decidedAt ?? 'not decided'],
          ['approvers', a.approvers.length === 0 ? 'none' : String(a.approvers.length)],
        ],
        '  ',
      ),
    );
    if (a.approvers.length > 0) {
      lines.push(
        ...aligned(
          [['subject', 'time', 'reason'], ...a.approvers.map((p) => [p.subject, p.time, p.reason ?? '-'])],
          '    ',
        ),
      );
    }
  }
  return lines;
}

function latency(l: AuditRecord['latency']): string {
  const parts: [string, number | undefined][] = [
    ['total', l.totalMs],
    ['auth', l.authMs],
    ['mask', l.maskMs],
    ['approval', l.approvalMs],
    ['upstream', l.upstreamMs],
    ['spool', l.spoolMs],
  ];
  return parts
    .filter((p): p is [string, number] => p[1] !== undefined)
    .map(([name, ms]) => `${name} ${ms} ms`)
    .join(', ');
}

/** Columns padded to their widest cell; every cell made printable. */
function aligned(rows: readonly (readonly string[])[], indent = ''): string[] {
  const cells = rows.map((row) => row.map(printable));
  const widths: number[] = [];
  for (const row of cells) row.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return cells.map((row) =>
    (
      indent + row.map((c, i) => (i === row.length - 1 ? c : c.padEnd((widths[i] ?? 0) + 2))).join('')
    ).trimEnd(),
  );
}

function shorten(text: string): string {
  return text.length > 120 ? `${text.slice(0, 117)}...` : text;
}
