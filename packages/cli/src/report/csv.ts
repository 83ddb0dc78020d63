// CSV per RFC 4180 (CRLF line ends, quoted where needed, quotes doubled), made
// safe to open in a spreadsheet: a text cell that starts like a formula gets
// a leading apostrophe, since record fields such as subjects and errors come
// from callers and could otherwise run as formulas on an auditor's machine.
import type { Cell } from './populations.ts';

const formulaStart = /^[=+\-@\t\r]/;
// `;` too: where it is the list separator (many European locales), an unquoted
// `x;=1+2` opens as two cells, the second a formula.
const needsQuotes = /[",;\r\n]/;

export function csvCell(value: Cell): string {
  if (value === null) return '';
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  const safe = formulaStart.test(value) ? `'${value}` : value;
  return needsQuotes.test(safe) ? `"${safe.replaceAll('"', '""')}"` : safe;
}

export function csvDocument(columns: readonly string[], rows: readonly (readonly Cell[])[]): string {
  return [columns, ...rows].map((row) => `${row.map(csvCell).join(',')}\r\n`).join('');
}
