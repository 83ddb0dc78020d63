import { z } from 'zod';

/**
 * The most inputs a request may carry whatever its policy says: `maxInputsPerRequest` goes no
 * higher. The policy's own limit is applied only once the body is read, so a longer list is
 * refused here, before its items are.
 */
export const MAX_INPUTS = 100_000;

/**
 * Caller-chosen model names are matched against the policy's globs and recorded; the bound keeps
 * matching cheap and leaves the record's limit on caller text unreached.
 */
export const MAX_MODEL_NAME = 256;

/**
 * Printable ASCII only: Ollama compares names with Unicode case folding, so `ſecret-embed` is
 * `secret-embed` to it, and a rule matching names could not tell every such spelling.
 */
export const modelName = z
  .string('must be a string')
  .max(MAX_MODEL_NAME, `must be at most ${MAX_MODEL_NAME} characters`)
  .regex(/^[\x20-\x7e]*$/, 'must be printable ASCII');

/** One problem with a field, `at` a path inside it (`[2]` is its third item). */
export interface Fault {
  readonly ok: false;
  readonly problem: string;
  readonly at: readonly number[];
}

/** What reading a field by hand found: its value, or its first problem. */
export type Reading<T> = { readonly ok: true; readonly value: T } | Fault;

export function found<T>(value: T): Reading<T> {
  return { ok: true, value };
}

export function fault(problem: string, ...at: number[]): Fault {
  return { ok: false, problem, at };
}

/**
 * A field read by `read` rather than by zod's arrays and unions. Those give every bad item an
 * issue of its own, in every branch of a union, so one list of half a million token ids took
 * seconds and hundreds of MiB; `read` stops at the first problem.
 */
export function readWith<T>(read: (value: unknown) => Reading<T>) {
  return z.unknown().transform((value, ctx): T => {
    const reading = read(value);
    if (reading.ok) return reading.value;
    ctx.issues.push({ code: 'custom', message: reading.problem, path: [...reading.at], input: value });
    return z.NEVER;
  });
}

/** A kind of list item: how to tell one, and its problem, if any (`at` inside the item). */
export interface ItemKind<T> {
  /** How a problem names it: 'a string'. */
  readonly name: string;
  readonly is: (item: unknown) => item is T;
  readonly check?: (item: T) => Fault | undefined;
}

/**
 * A copy of `items` if all are of `kind` and pass its check, else the first problem: `mismatch`
 * says what is wrong with an item of another kind.
 */
export function readList<T>(
  items: readonly unknown[],
  kind: ItemKind<T>,
  mismatch: (index: number) => Fault,
): Reading<T[]> {
  for (let index = 0; index < items.length; index++) {
    const item = items[index];
    if (!kind.is(item)) return mismatch(index);
    const problem = kind.check?.(item);
    if (problem !== undefined) return { ...problem, at: [index, ...problem.at] };
  }
  return found(items.slice() as T[]);
}

/** A list of inputs longer than any policy takes; undefined for one it may. */
export function tooManyInputs(items: readonly unknown[]): Fault | undefined {
  if (items.length <= MAX_INPUTS) return undefined;
  return fault(`holds ${items.length} inputs, more than the ${MAX_INPUTS} any policy allows`);
}

export const anyText: ItemKind<string> = {
  name: 'a string',
  is: (item): item is string => typeof item === 'string',
};

/** The problem of an item of another kind than the first, which fixed the list's form. */
export function otherKind(
  field: string,
  shape: string,
  kind: { readonly name: string },
): (index: number) => Fault {
  return (index) => fault(`${shape}: '${field}[${index}]' is not ${kind.name}`);
}

/** A list of inputs, all of `kind`, the first item's. */
export function readInputList<T>(
  field: string,
  shape: string,
  items: readonly unknown[],
  kind: ItemKind<T>,
): Reading<T[]> {
  return tooManyInputs(items) ?? readList(items, kind, otherKind(field, shape, kind));
}

/**
 * TEI's and Ollama's input: one string or a list of strings, which Ollama takes empty and TEI
 * does not. A list of anything else is refused by its first item.
 */
export function textOrTexts(field: string, shape: string, emptyList: 'allowed' | 'refused') {
  return (value: unknown): Reading<{ texts: string[]; single: boolean }> => {
    if (typeof value === 'string') return found({ texts: [value], single: true });
    if (!Array.isArray(value)) return fault(shape);
    if (value.length === 0) {
      return emptyList === 'allowed'
        ? found({ texts: [], single: false })
        : fault('must not be an empty array');
    }
    if (typeof value[0] !== 'string') return fault(shape);
    const texts = readInputList(field, shape, value, anyText);
    return texts.ok ? found({ texts: texts.value, single: false }) : texts;
  };
}
