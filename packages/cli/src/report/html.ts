// The evidence report as one HTML file that opens offline and prints: inline
// CSS, no scripts, no external assets. Every value from the evidence passes
// through `escapeHtml`, since keys, subjects and errors are written by others.
import type { Finding, StreamSummary } from '@veil/core';
import type { Report } from './model.ts';
import type { Cell, Population } from './populations.ts';
import { type RetentionEntry, type RetentionStatus, retentionStatuses } from './retention.ts';

/** Tables longer than this show their first rows; the CSV and JSON hold them all. */
export const maxHtmlRows = 500;

export function escapeHtml(value: string): string {
  return value
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');
}

export function renderHtml(report: Report): string {
  const verdictClass = verdictClasses[report.verdict];
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Veil audit evidence report: ${escapeHtml(report.verdict)}</title>
<style>${css}</style>
</head>
<body>
<header>
<h1>Audit evidence report</h1>
<p class="meta">${sourceLine(report)}</p>
</header>
<nav><a href="#summary">Summary</a> · <a href="#findings">Findings</a> · <a href="#streams">Streams</a> · <a href="#retention">Retention</a> · <a href="#populations">Populations</a></nav>
${summarySection(report, verdictClass)}
${findingsSection(report.findings)}
${streamsSection(report.streams)}
${retentionSection(report)}
${populationsSection(report.populations)}
<footer>Evidence format veil.manifest/v1 · report format ${escapeHtml(report.format)}</footer>
</body>
</html>
`;
}

const verdictClasses: Record<Report['verdict'], string> = {
  VALID: 'good',
  'VALID WITH WARNINGS': 'warn',
  INVALID: 'bad',
  'NO EVIDENCE': 'bad',
};

const css = `
:root{--fg:#1b1f24;--muted:#5b6470;--line:#d6dbe1;--bg:#fff;--head:#f3f5f7;--good:#116329;--good-bg:#dafbe1;--bad:#a40e26;--bad-bg:#ffebe9;--warn:#7d4e00;--warn-bg:#fff8c5}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg);margin:0 auto;max-width:1200px;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:32px 0 8px;padding-bottom:4px;border-bottom:1px solid var(--line)}h3{font-size:16px;margin:24px 0 6px}h4{font-size:14px;margin:12px 0 4px;color:var(--muted)}
.meta,footer,.note{color:var(--muted)}footer{margin-top:40px;font-size:12px}
nav{margin:12px 0 0;font-size:13px}a{color:#0550ae}
.verdict{display:inline-block;font-size:22px;font-weight:700;padding:8px 16px;border-radius:6px;margin:8px 0}
.good{color:var(--good);background:var(--good-bg)}.bad{color:var(--bad);background:var(--bad-bg)}.warn{color:var(--warn);background:var(--warn-bg)}
.stats{display:flex;flex-wrap:wrap;gap:12px;margin:8px 0;padding:0;list-style:none}
.stats li{border:1px solid var(--line);border-radius:6px;padding:8px 14px;min-width:120px}
.stats b{display:block;font-size:20px}
table{border-collapse:collapse;width:100%;margin:6px 0 12px;font-size:13px}
th,td{border:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top}
th{background:var(--head);font-weight:600}
td{overflow-wrap:break-word}td.num{text-align:right;font-variant-numeric:tabular-nums}
.wide table{font-size:12px}.wide td,.wide th{white-space:nowrap}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:16px}
.scroll{overflow-x:auto}
@media print{nav{display:none}body{padding:0}h2{break-after:avoid}tr{break-inside:avoid}}
`;

function sourceLine(report: Report): string {
  const s = report.source;
  const parts =
    s.kind === 'pulled'
      ? [
          `Bucket <b>${escapeHtml(s.bucket ?? '')}</b>${s.endpoint ? ` at ${escapeHtml(s.endpoint)}` : ''}, prefix ${escapeHtml(s.prefix ?? '')}`,
          `pulled ${escapeHtml(s.pulledAt ?? '')}`,
          ...(s.from || s.before
            ? [
                `object time from ${escapeHtml(s.from ?? 'the start')} to before ${escapeHtml(s.before ?? 'now')}`,
              ]
            : []),
        ]
      : [`Local evidence directory ${escapeHtml(s.dir)} (not WORM storage)`];
  return [...parts, `report generated ${escapeHtml(report.generatedAt)}`].join(' · ');
}

function summarySection(report: Report, verdictClass: string): string {
  const invalid = report.findings.filter((f) => f.level === 'INVALID').length;
  const warnings = report.findings.length - invalid;
  const t = report.totals;
  const stats: [string, Cell][] = [
    ['Streams', t.streams],
    ['Batches', t.batches],
    ['Records verified', t.records],
    ['Requests', t.requests],
    ['Gaps', t.gaps],
    ['Incomplete requests', t.incomplete],
    ['INVALID findings', invalid],
    ['Warnings', warnings],
    ['Versions locked', report.retention.counts.locked],
  ];
  return `<section id="summary">
<h2>Summary</h2>
<div class="verdict ${verdictClass}">${escapeHtml(report.verdict)}</div>
<p>${escapeHtml(report.summary)}${report.minRetentionDays === null ? '' : `; minimum retention checked: ${report.minRetentionDays} days`}.</p>
<ul class="stats">${stats.map(([label, value]) => `<li><b>${cell(value)}</b>${escapeHtml(label)}</li>`).join('')}</ul>
</section>`;
}

function findingsSection(findings: readonly Finding[]): string {
  const ordered = [
    ...findings.filter((f) => f.level === 'INVALID'),
    ...findings.filter((f) => f.level !== 'INVALID'),
  ];
  const body =
    ordered.length === 0
      ? '<p>No findings: every check passed.</p>'
      : table(
          ['Level', 'Check', 'Stream', 'Key', 'What'],
          ordered.map((f) => [f.level, f.code, f.stream, f.key, f.message]),
          (row) => (row[0] === 'INVALID' ? 'bad' : 'warn'),
        );
  return `<section id="findings">\n<h2>Findings (${findings.length})</h2>\n${body}\n</section>`;
}

function streamsSection(streams: readonly StreamSummary[]): string {
  const rows = streams.map((s): Cell[] => [
    s.stream,
    s.keyId,
    s.batches,
    s.records,
    s.firstSeq === null ? null : `${s.firstSeq}–${s.lastSeq}`,
    s.firstTime === null ? null : `${s.firstTime} – ${s.lastTime}`,
    s.closed ? 'closed' : 'not closed',
    s.incomplete,
    s.valid ? 'valid' : 'INVALID',
  ]);
  const body =
    rows.length === 0
      ? '<p>No stream found.</p>'
      : table(
          [
            'Stream',
            'Key id',
            'Batches',
            'Records',
            'Seq',
            'Record times',
            'Closing manifest',
            'Incomplete',
            'Verdict',
          ],
          rows,
          (row) => (row[8] === 'INVALID' ? 'bad' : ''),
        );
  return `<section id="streams">\n<h2>Streams (${streams.length})</h2>\n${body}\n</section>`;
}

const statusLabels: Record<RetentionStatus, string> = {
  locked: 'locked (COMPLIANCE)',
  'too-short': 'locked (COMPLIANCE), too short',
  governance: 'locked (GOVERNANCE only)',
  expired: 'lock expired',
  'not-locked': 'not locked',
  'delete-marker': 'delete marker',
  'not-worm': 'local file (not WORM)',
};

function retentionSection(report: Report): string {
  const r = report.retention;
  const lock = r.objectLock;
  const bucketLine =
    lock === null
      ? 'Local directory: no Object Lock, no versioning.'
      : `Object Lock ${lock.enabled ? 'enabled' : 'NOT enabled'}${
          lock.mode ? `, default retention ${lock.mode} for ${defaultPeriod(lock)}` : ', no default retention'
        }; versioning ${r.versioning ?? 'unknown'}.`;
  const counts = retentionStatuses
    .filter((s) => r.counts[s] > 0)
    .map((s): Cell[] => [statusLabels[s], r.counts[s]]);
  // Whatever is not safely locked comes first: that is what an auditor looks at.
  const order = (e: RetentionEntry) => (e.status === 'locked' ? 1 : 0);
  const objects = [...r.objects].sort((a, b) => order(a) - order(b));
  return `<section id="retention">
<h2>Retention</h2>
<p>${escapeHtml(bucketLine)} Status as of ${escapeHtml(r.now)}${
    r.earliestRetainUntil ? `; the first lock runs out ${escapeHtml(r.earliestRetainUntil)}` : ''
  }.</p>
${table(['Status', 'Object versions'], counts)}
<h3>Object versions</h3>
${table(
  ['Key', 'Version', 'Latest', 'Lock', 'Retain until', 'Days left', 'Status'],
  objects.map((o) => [
    o.key,
    o.versionId,
    o.isLatest ? 'yes' : 'no',
    o.lockMode,
    o.retainUntil,
    o.daysLeft,
    statusLabels[o.status],
  ]),
  (row) => (row[6] === statusLabels.locked ? '' : 'bad'),
)}
</section>`;
}

function defaultPeriod(lock: { days: number | null; years: number | null }): string {
  return lock.days !== null ? `${lock.days} days` : `${lock.years ?? 0} years`;
}

function populationsSection(populations: readonly Population[]): string {
  const overview = table(
    ['Population', 'Members', 'Identities', 'Days'],
    populations.map((p) => [p.title, p.count, p.byIdentity.length, p.byDay.length]),
  );
  return `<section id="populations">
<h2>Populations</h2>
<p>What an auditor samples from, drawn from verified records only. Each population is also written in full as CSV and in the JSON report.</p>
${overview}
${populations.map(populationSection).join('\n')}
</section>`;
}

function populationSection(p: Population): string {
  const identities = table(
    ['Issuer', 'Subject', 'Count'],
    p.byIdentity.map((i) => [i.issuer ?? '(no identity)', i.subject ?? '(no identity)', i.count]),
  );
  const days = table(
    ['Day (UTC)', 'Count'],
    p.byDay.map((d) => [d.day, d.count]),
  );
  return `<h3 id="${escapeHtml(p.name)}">${escapeHtml(p.title)} (${p.count})</h3>
<p class="note">${escapeHtml(p.description)}</p>
<div class="pair"><div><h4>Per identity</h4>${identities}</div><div><h4>Per day</h4>${days}</div></div>
<h4>Members</h4>
${p.count === 0 ? '<p>None.</p>' : `<div class="wide">${table(p.columns, p.rows)}</div>`}`;
}

function table(
  columns: readonly string[],
  rows: readonly (readonly Cell[])[],
  rowClass?: (row: readonly Cell[]) => string,
): string {
  const shown = rows.slice(0, maxHtmlRows);
  const head = `<tr>${columns.map((c) => `<th>${escapeHtml(c)}</th>`).join('')}</tr>`;
  const body = shown
    .map((row) => {
      const cls = rowClass?.(row);
      return `<tr${cls ? ` class="${cls}"` : ''}>${row.map((c) => `<td${typeof c === 'number' ? ' class="num"' : ''}>${cell(c)}</td>`).join('')}</tr>`;
    })
    .join('\n');
  const note =
    rows.length > shown.length
      ? `<p class="note">Showing the first ${shown.length} of ${rows.length} rows; the CSV and JSON files hold them all.</p>`
      : '';
  return `<div class="scroll"><table>\n<thead>${head}</thead>\n<tbody>\n${body}\n</tbody>\n</table></div>${note}`;
}

function cell(value: Cell): string {
  if (value === null) return '';
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  return escapeHtml(String(value));
}
