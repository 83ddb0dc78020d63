// Progress of a long transfer, on stderr so stdout stays clean for results.
// On a terminal one line redraws in place; in a log (CI, a pipe) a plain line
// is written now and then, since carriage returns there only make noise.

export type ProgressOutput = {
  readonly isTTY?: boolean;
  readonly columns?: number;
  write(text: string): unknown;
};

export type ProgressOptions = {
  output: ProgressOutput;
  /** What is being done: `pull`. */
  label: string;
  /** Milliseconds; injectable so tests never depend on wall-clock time. */
  now?: () => number;
  /** Least time between two lines when not on a terminal. */
  logIntervalMs?: number;
  /** Least time between two redraws on a terminal. */
  redrawIntervalMs?: number;
};

export type Progress = {
  start(totalItems: number, totalBytes: number): void;
  /** One item finished, with its bytes. */
  advance(bytes: number): void;
  /** Final state, then a newline on a terminal; `note` is appended (e.g. "3 skipped"). */
  finish(note?: string): void;
  /** The transfer failed: on a terminal the bar's line is ended, so the error starts a line of its own. */
  abort(): void;
};

type State = { items: number; bytes: number; totalItems: number; totalBytes: number };

export function createProgress(options: ProgressOptions): Progress {
  const { output, label } = options;
  const now = options.now ?? Date.now;
  const tty = output.isTTY === true;
  const interval = tty ? (options.redrawIntervalMs ?? 100) : (options.logIntervalMs ?? 5_000);
  const state: State = { items: 0, bytes: 0, totalItems: 0, totalBytes: 0 };
  let last = Number.NEGATIVE_INFINITY;
  /** A bar is on the terminal's current line, not yet ended by a newline. */
  let lineOpen = false;
  /** Work still under way when the transfer failed must not draw over its error. */
  let aborted = false;

  const draw = (note?: string) => {
    last = now();
    lineOpen = tty;
    if (tty) {
      const width = Math.max(10, Math.min(40, (output.columns ?? 80) - 60));
      output.write(`\r\x1b[K${barLine(label, state, width)}${note ? `  ${note}` : ''}`);
    } else {
      output.write(`${plainLine(label, state)}${note ? `, ${note}` : ''}\n`);
    }
  };

  const endLine = () => {
    if (lineOpen) output.write('\n');
    lineOpen = false;
  };

  return {
    start(totalItems, totalBytes) {
      Object.assign(state, { items: 0, bytes: 0, totalItems, totalBytes });
      draw();
    },
    advance(bytes) {
      state.items += 1;
      state.bytes += bytes;
      if (!aborted && now() - last >= interval) draw();
    },
    finish(note) {
      draw(note);
      endLine();
    },
    abort() {
      aborted = true;
      endLine();
    },
  };
}

/** `pull [########········]  12/40 objects  1.2 MiB/3.4 MiB  35%` */
export function barLine(label: string, state: State, width: number): string {
  const ratio = fraction(state);
  const filled = Math.round(ratio * width);
  const bar = `${'#'.repeat(filled)}${'·'.repeat(width - filled)}`;
  return `${label} [${bar}]  ${counts(state)}  ${Math.floor(ratio * 100)}%`;
}

/** `pull: 12/40 objects, 1.2 MiB/3.4 MiB (35%)` */
export function plainLine(label: string, state: State): string {
  return `${label}: ${counts(state).replace('  ', ', ')} (${Math.floor(fraction(state) * 100)}%)`;
}

function counts(state: State): string {
  return `${state.items}/${state.totalItems} objects  ${formatBytes(state.bytes)}/${formatBytes(state.totalBytes)}`;
}

// By bytes when there are any, since objects differ in size; an empty set is done.
function fraction(state: State): number {
  if (state.totalBytes > 0) return Math.min(1, state.bytes / state.totalBytes);
  if (state.totalItems > 0) return Math.min(1, state.items / state.totalItems);
  return 1;
}

const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}
