// How approvals read in a terminal: a table for `list`, a page for `show`.
// Requesters and approvers wrote most of what is shown: every field goes
// through printable(). A field the requester chose (subject, issuer, groups,
// API, model, operation, digest, summary) is quoted besides whenever it holds
// anything but a few plain characters: a model named
// "bge-small   12      0/1   2026-12-01T03:00:00.000Z" must not pass for the
// counts and expiry Veil writes beside it.
import { isPlain, printable, quoted } from '../printable.ts';
import type { Approval, UnreadableApproval } from './client.ts';

export function approvedCount(approval: Approval): number {
  return new Set(approval.status.decisions.filter((d) => d.decision === 'approve').map((d) => d.approver))
    .size;
}

/** A field the requester chose, as shown: bare when plain, else quoted and escaped. */
export function requesterText(text: string): string {
  return isPlain(text) ? text : quoted(text);
}

function requester(approval: Approval): string {
  return requesterText(approval.spec.requester.subject);
}

export function renderTable(approvals: readonly Approval[], allNamespaces: boolean): string[] {
  const header = [
    ...(allNamespaces ? ['NAMESPACE'] : []),
    'NAME',
    'PHASE',
    'REQUESTER',
    'MODEL',
    'INPUTS',
    'APPROVALS',
    'EXPIRES',
  ];
  const rows = approvals.map((a) => [
    ...(allNamespaces ? [printable(a.namespace)] : []),
    printable(a.name),
    printable(a.status.phase),
    requester(a),
    requesterText(a.spec.request.model),
    String(a.spec.request.inputCount),
    `${approvedCount(a)}/${a.spec.approvers.count}`,
    printable(a.spec.expiresAt),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  return [header, ...rows].map((row) =>
    row
      .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd(),
  );
}

export function renderApproval(a: Approval): string[] {
  const p = printable;
  const q = requesterText;
  const r = a.spec.request;
  const caller = a.spec.requester;
  const lines = [
    `Approval:   ${p(a.namespace)}/${p(a.name)}`,
    `Phase:      ${p(a.status.phase)}${a.status.decidedAt ? ` (decided ${p(a.status.decidedAt)})` : ''}`,
    `Requester:  ${q(caller.subject)} (issuer ${q(caller.issuer)}; groups ${caller.groups.map(q).join(', ') || 'none'})`,
    `Held by:    policy ${p(a.spec.policy)}, rule ${p(a.spec.rule)}, pod ${p(a.spec.pod.namespace)}/${p(a.spec.pod.name)}`,
    `Request:    ${q(r.api)} ${q(r.model)}, ${r.inputCount} inputs, ${r.bytes} bytes${r.operation ? `, operation ${q(r.operation)}` : ''}`,
    `Digest:     ${q(r.digest)}`,
    ...(r.summary ? [`Summary:    ${q(r.summary)}`] : []),
    `Needs:      ${a.spec.approvers.count} distinct approver(s) from ${a.spec.approvers.groups.map(p).join(', ')}; the requester never approves`,
    `Expires:    ${p(a.spec.expiresAt)}${a.spec.singleUse ? ' (single use)' : ''}`,
    ...(a.createdAt ? [`Requested:  ${p(a.createdAt)}`] : []),
    ...(a.status.usedAt ? [`Used:       ${p(a.status.usedAt)}`] : []),
    ...(a.status.message ? [`Message:    ${p(a.status.message)}`] : []),
    `Decisions:  ${a.status.decisions.length === 0 ? 'none yet' : ''}`.trimEnd(),
  ];
  for (const d of a.status.decisions) {
    lines.push(`  ${p(d.time)}  ${p(d.decision).padEnd(7)}  ${p(d.approver)}  ${quoted(d.reason)}`);
  }
  return lines;
}

/** An object a listing could not read: named, so it can be looked at with kubectl. */
export function unreadableLine(bad: UnreadableApproval): string {
  return `Cannot read EmbeddingApproval ${printable(bad.namespace)}/${printable(bad.name)}: ${printable(bad.problem)}`;
}
