// Plain-text tables and figures for the bench's report.

export type Cell = string | number | undefined;

/** Columns after the first are right-aligned; numbers are printed as given by `fmt`. */
export function table(headers: readonly string[], rows: readonly (readonly Cell[])[]): string {
  const text = [headers, ...rows].map((row) => row.map((cell) => (cell === undefined ? '–' : String(cell))));
  const widths = headers.map((_, column) => Math.max(...text.map((row) => (row[column] ?? '').length)));
  const line = (row: readonly string[]) =>
    row
      .map((cell, column) =>
        column === 0 ? cell.padEnd(widths[column] ?? 0) : cell.padStart(widths[column] ?? 0),
      )
      .join('   ')
      .trimEnd();
  const [head, ...body] = text;
  const rule = widths.map((width) => '─'.repeat(width)).join('   ');
  return ['  ' + line(head ?? []), '  ' + rule, ...body.map((row) => '  ' + line(row))].join('\n');
}

export function ms(value: number | undefined): string | undefined {
  if (value === undefined || !Number.isFinite(value)) return undefined;
  return value < 10 ? value.toFixed(2) : value.toFixed(1);
}

export function signedMs(value: number | undefined): string | undefined {
  const text = ms(value === undefined ? undefined : Math.abs(value));
  if (text === undefined || value === undefined) return undefined;
  return `${value < 0 ? '−' : '+'}${text} ms`;
}

export function rate(value: number | undefined): string | undefined {
  if (value === undefined || !Number.isFinite(value)) return undefined;
  return value >= 100 ? Math.round(value).toLocaleString('en-US') : value.toFixed(1);
}

export function ratio(value: number | undefined): string | undefined {
  if (value === undefined || !Number.isFinite(value)) return undefined;
  return `${value.toFixed(2)}×`;
}

export function percent(value: number | undefined): string | undefined {
  if (value === undefined || !Number.isFinite(value)) return undefined;
  return `${Math.round(value * 100)}%`;
}

export function mib(bytes: number | undefined): string | undefined {
  if (bytes === undefined) return undefined;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

export interface TargetCheck {
  readonly label: string;
  /** Undefined when the scenario did not run or the figure could not be measured. */
  readonly met: boolean | undefined;
  readonly measured: string | undefined;
  /** Why a figure could not be judged. */
  readonly note?: string;
}

export function verdict(check: TargetCheck): string {
  const text = check.met === undefined ? 'not measured' : check.met ? 'met' : 'NOT met';
  return check.note ? `${text} (${check.note})` : text;
}
