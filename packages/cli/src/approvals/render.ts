// How approvals read in a terminal: a table for `list`, a page for `show`.
import type { Approval } from './client.ts';

export function approvedCount(approval: Approval): number {
  return new Set(approval.status.decisions.filter((d) => d.decision === 'approve').map((d) => d.approver))
    .size;
}

function requester(approval: Approval): string {
  return approval.spec.requester.subject;
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
    ...(allNamespaces ? [a.namespace] : []),
    a.name,
    a.status.phase,
    requester(a),
    a.spec.request.model,
    String(a.spec.request.inputCount),
    `${approvedCount(a)}/${a.spec.approvers.count}`,
    a.spec.expiresAt,
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
  const r = a.spec.request;
  const lines = [
    `Approval:   ${a.namespace}/${a.name}`,
    `Phase:      ${a.status.phase}${a.status.decidedAt ? ` (decided ${a.status.decidedAt})` : ''}`,
    `Requester:  ${a.spec.requester.subject} (issuer ${a.spec.requester.issuer}; groups ${a.spec.requester.groups.join(', ') || 'none'})`,
    `Held by:    policy ${a.spec.policy}, rule ${a.spec.rule}, pod ${a.spec.pod.namespace}/${a.spec.pod.name}`,
    `Request:    ${r.api} ${r.model}, ${r.inputCount} inputs, ${r.bytes} bytes${r.operation ? `, operation ${r.operation}` : ''}`,
    `Digest:     ${r.digest}`,
    ...(r.summary ? [`Summary:    ${r.summary}`] : []),
    `Needs:      ${a.spec.approvers.count} distinct approver(s) from ${a.spec.approvers.groups.join(', ')}; the requester never approves`,
    `Expires:    ${a.spec.expiresAt}${a.spec.singleUse ? ' (single use)' : ''}`,
    ...(a.createdAt ? [`Requested:  ${a.createdAt}`] : []),
    ...(a.status.usedAt ? [`Used:       ${a.status.usedAt}`] : []),
    ...(a.status.message ? [`Message:    ${a.status.message}`] : []),
    `Decisions:  ${a.status.decisions.length === 0 ? 'none yet' : ''}`.trimEnd(),
  ];
  for (const d of a.status.decisions) {
    lines.push(`  ${d.time}  ${d.decision.padEnd(7)}  ${d.approver}  "${d.reason}"`);
  }
  return lines;
}
