// Mask actions as they enter the audit record: what was masked, where and how
// many times, never the value.
import type { MaskOperator } from './operators.ts';
import type { Scanner } from './scanner.ts';

export interface MaskAction {
  /** Detector name, or `pattern:<name>` for a user pattern. */
  detector: string;
  count: number;
  /** Where the values were, e.g. `input[3]` or `response.texts[0]`. */
  field: string;
  operator: MaskOperator;
  rule: string;
}

/** Counts matches per rule, detector and field. */
export class ActionLog {
  readonly #actions = new Map<string, MaskAction>();

  add(scanner: Scanner, field: string): void {
    const detector = scanner.finder.id;
    const key = `${scanner.rule}\u0000${detector}\u0000${field}`;
    const action = this.#actions.get(key);
    if (action !== undefined) action.count++;
    else
      this.#actions.set(key, { detector, count: 1, field, operator: scanner.operator, rule: scanner.rule });
  }

  list(): MaskAction[] {
    return [...this.#actions.values()];
  }
}
