// A JSON encoder derived from a zod schema: one pass over a value that checks
// it against the schema and writes the JSON of what the schema's `parse` would
// return (defaults filled, keys in schema order, unknown keys dropped or, for
// strict objects, refused). The recorder validates every record before it is
// made durable, and zod's general machinery (a payload object and a
// megamorphic call per field) was a third of the recorder's time per record.
//
// The rules stay zod's: the schema is walked once and each field's own zod
// checks (lengths, formats, refinements) are called unchanged. The walk emits
// one small function per schema node, as zod's own object parser and
// fast-json-stringify do, so each call site sees one shape and one check; the
// source is built only from the schema (keys as JSON literals, numbered
// constants), never from a value being encoded. Only the schema kinds evidence
// records use are understood; anything else is refused when compiling, never
// guessed at. A value the encoder rejects gets no reason: the caller asks zod
// itself for the error.
import type { z } from 'zod';

/** The JSON of the parsed value, or undefined when the value does not match. */
export type JsonEncoder = (value: unknown) => string | undefined;

interface CheckPayload {
  value: unknown;
  issues: unknown[];
}

/** A zod check's function: returns a promise when asynchronous, else pushes issues on failure. */
type CheckFunction = (payload: CheckPayload) => unknown;

/** The part of a zod check (or of a schema that is also a check) this file calls. */
interface ZodCheck {
  readonly _zod: {
    readonly def: { readonly check?: string; readonly when?: (payload: CheckPayload) => boolean };
    readonly check: CheckFunction;
  };
}

interface ZodNodeDef {
  readonly type: string;
  readonly checks?: readonly ZodCheck[];
  readonly innerType?: ZodNode;
  readonly defaultValue?: unknown;
  readonly element?: ZodNode;
  readonly options?: readonly ZodNode[];
  readonly shape?: Readonly<Record<string, ZodNode>>;
  readonly catchall?: ZodNode;
}

/** Zod 4's internals for library authors: `_zod.def`, `_zod.traits`, `_zod.values`. */
interface ZodNode {
  readonly _zod: {
    readonly def: ZodNodeDef;
    readonly traits: ReadonlySet<string>;
    readonly values?: ReadonlySet<unknown>;
  };
}

export function compileJsonEncoder(schema: z.ZodType): JsonEncoder {
  const program = new Program();
  const root = program.node(schema as unknown as ZodNode, '(root)');
  return program.link(root);
}

/** Whether a comma goes before an object's field: fields before it are always, maybe or never written. */
type Comma = 'always' | 'maybe' | 'none';

/** What JSON.stringify escapes in a string; a string without any is written as it is. */
const escaped = /["\\\u0000-\u001f\ud800-\udfff]/;

/** Numbered functions (`e0`, `e1`, …) and constants (`k0`, …) that become one closure. */
class Program {
  readonly #functions: string[] = [];
  readonly #constants: unknown[] = [];

  /** Emits the encoder of `node`; returns its name. */
  node(node: ZodNode, path: string): string {
    const def = node._zod.def;
    switch (def.type) {
      case 'string': {
        const body =
          `if (typeof v !== 'string') return;${this.#checks(node)}` +
          'return escaped.test(v) ? JSON.stringify(v) : `"${v}"`;';
        return valueChecksOnly(node) ? this.#remembered(body) : this.#emit(body);
      }
      case 'number':
        // zod's number takes finite numbers only; for those String() is JSON's spelling.
        return this.#emit(
          `if (typeof v !== 'number' || !Number.isFinite(v)) return;${this.#checks(node)}return String(v);`,
        );
      case 'enum': {
        noChecks(node, path);
        const values = required(node._zod.values, path);
        const json = this.#constant(new Map([...values].map((value) => [value, JSON.stringify(value)])));
        return this.#emit(`return ${json}.get(v);`);
      }
      case 'nullable':
        noChecks(node, path);
        return this.#emit(
          `return v === null ? 'null' : ${this.node(required(def.innerType, path), path)}(v);`,
        );
      case 'array': {
        const element = this.node(required(def.element, `${path}[]`), `${path}[]`);
        return this.#emit(
          `if (!Array.isArray(v)) return;let o = '[';` +
            `for (let i = 0; i < v.length; i++) { const x = ${element}(v[i]); if (x === undefined) return; o += i === 0 ? x : ',' + x; }` +
            `${this.#checks(node)}return o + ']';`,
        );
      }
      case 'union': {
        noChecks(node, path);
        // zod's union takes the first option that matches.
        const options = required(def.options, path).map((option) => this.node(option, path));
        return this.#emit(
          `let x;${options.map((option) => `x = ${option}(v); if (x !== undefined) return x;`).join('')}`,
        );
      }
      case 'object':
        noChecks(node, path);
        return this.#object(def, path);
      default:
        throw new Error(`cannot derive a JSON encoder for a zod ${def.type} at ${path}`);
    }
  }

  link(root: string): JsonEncoder {
    const source = `'use strict';const p = { value: undefined, issues: [] };${this.#functions.join('')}return ${root};`;
    const names = this.#constants.map((_, index) => `k${index}`);
    return new Function('escaped', ...names, source)(escaped, ...this.#constants);
  }

  #object(def: ZodNodeDef, path: string): string {
    const shape = required(def.shape, path);
    const catchall = def.catchall?._zod.def.type;
    if (catchall !== undefined && catchall !== 'never') {
      throw new Error(`cannot derive a JSON encoder for an object with a catchall at ${path}`);
    }
    const keys = Object.keys(shape);
    // As zod's strict objects do: every enumerable key, inherited ones included.
    const strict =
      catchall === 'never'
        ? `for (const key in v) switch (key) {${keys.map((key) => `case ${JSON.stringify(key)}:`).join('')} continue; default: return; }`
        : '';
    // A comma goes before every field but the first written: which one that is
    // is known here, unless optional fields come first.
    let before: Comma = 'none';
    const fields = keys.map((key) => {
      const node = shape[key] as ZodNode;
      const comma = before;
      if (node._zod.def.type !== 'optional') before = 'always';
      else if (before === 'none') before = 'maybe';
      return this.#field(key, node, comma, `${path}.${key}`);
    });
    return this.#emit(
      `if (typeof v !== 'object' || v === null || Array.isArray(v)) return;${strict}` +
        `let o = '{', x;${fields.join('')}return o + '}';`,
    );
  }

  /** Appends `"key":json` to `o`, after a comma unless it is the first field written; nothing for an optional field left out. */
  #field(key: string, node: ZodNode, comma: Comma, path: string): string {
    const def = node._zod.def;
    const value = `v[${JSON.stringify(key)}]`;
    const written = (json: string) => {
      const literal = JSON.stringify(`${comma === 'always' ? ',' : ''}${JSON.stringify(key)}:${json}`);
      return comma === 'maybe' ? `(o.length > 1 ? ',' : '') + ${literal}` : literal;
    };
    const append = (encoder: string) =>
      `x = ${encoder}(${value}); if (x === undefined) return; o += ${written('')} + x;`;
    if (def.type === 'optional') {
      noChecks(node, path);
      return `if (${value} !== undefined) {${append(this.node(required(def.innerType, path), path))}}`;
    }
    if (def.type === 'default') {
      noChecks(node, path);
      // zod fills a default without checking it against the inner schema: nor does this.
      return `if (${value} === undefined) o += ${written(JSON.stringify(def.defaultValue))}; else {${append(this.node(required(def.innerType, path), path))}}`;
    }
    return append(this.node(node, path));
  }

  /**
   * Runs the node's zod checks on `v`, in zod's order. A check whose pass is
   * plain to see (a bound, a length, a pattern) is first tried inline, and its
   * zod function called only when that does not pass: a record has dozens of
   * checks, and the calls were a third of its encoding.
   */
  #checks(node: ZodNode): string {
    const checks = checksOf(node);
    if (checks.length === 0) return '';
    const failed = checks.map((check) => {
      const plain = this.#plainPass(check);
      if (plain === undefined) return this.#fails(check);
      // A check with a condition may not apply at all: only zod can tell.
      const exact = plain.exact && check._zod.def.when === undefined;
      return exact ? `!(${plain.pass})` : `(!(${plain.pass}) && ${this.#fails(check)})`;
    });
    return `if (${failed.join(' || ')}) return;`;
  }

  /** Whether zod's check refuses `v`; one that returns anything (a promise: asynchronous) counts as refusing: zod then decides. */
  #fails(check: ZodCheck): string {
    const call = `${this.#constant(check._zod.check)}(p) !== undefined || p.issues.length !== 0`;
    const when = check._zod.def.when;
    const run = when === undefined ? call : `${this.#constant(when)}(p) && (${call})`;
    return `(p.value = v, p.issues.length = 0, ${run})`;
  }

  /**
   * An expression true only where zod's check passes `v` (of the node's type
   * by now), or undefined. `exact`: false exactly where zod refuses too; else
   * it may be false where zod passes (a string whose length zod counts in
   * code points), and zod has the last word.
   */
  #plainPass(check: ZodCheck): { pass: string; exact: boolean } | undefined {
    const def = check._zod.def as PlainCheckDef;
    switch (def.check) {
      case 'greater_than':
        if (typeof def.value !== 'number') return undefined;
        return { pass: `v ${def.inclusive ? '>=' : '>'} ${def.value}`, exact: true };
      case 'less_than':
        if (typeof def.value !== 'number') return undefined;
        return { pass: `v ${def.inclusive ? '<=' : '<'} ${def.value}`, exact: true };
      case 'number_format':
        return def.format === 'safeint' ? { pass: 'Number.isSafeInteger(v)', exact: true } : undefined;
      // Up to these lengths, zod counts UTF-16 units as they are.
      case 'min_length':
        if (typeof def.minimum !== 'number') return undefined;
        return { pass: `v.length >= ${2 * def.minimum}`, exact: false };
      case 'max_length':
        if (typeof def.maximum !== 'number') return undefined;
        return { pass: `v.length <= ${def.maximum}`, exact: false };
      case 'string_format': {
        // Formats whose zod check is the pattern's test alone.
        if (!patternFormats.has(def.format ?? '') || !(def.pattern instanceof RegExp)) return undefined;
        const pattern = this.#constant(def.pattern);
        return { pass: `(${pattern}.lastIndex = 0, ${pattern}.test(v))`, exact: true };
      }
      default:
        return undefined;
    }
  }

  /**
   * `body` behind a memory of the last value it took. Most strings of a record
   * are those of the record before (stream, pod, identity, policy, route,
   * model, masking rules), and when a string's checks look at nothing but the
   * string, the same string gets the same JSON: it is not checked and escaped
   * again. Only a value that passed is remembered; before one has, the memory
   * holds undefined, which no string is.
   */
  #remembered(body: string): string {
    const encode = this.#emit(body);
    const last = `${encode}Value`;
    const json = `${encode}Json`;
    this.#functions.push(`let ${last}, ${json};`);
    return this.#emit(
      `if (v === ${last}) return ${json};const x = ${encode}(v);if (x !== undefined) { ${last} = v; ${json} = x; }return x;`,
    );
  }

  #emit(body: string): string {
    const name = `e${this.#functions.length}`;
    this.#functions.push(`function ${name}(v) {${body}}`);
    return name;
  }

  #constant(value: unknown): string {
    this.#constants.push(value);
    return `k${this.#constants.length - 1}`;
  }
}

/** The parts of a zod check's definition `#plainPass` reads. */
interface PlainCheckDef {
  readonly check?: string;
  readonly value?: unknown;
  readonly inclusive?: boolean;
  readonly format?: string;
  readonly minimum?: unknown;
  readonly maximum?: unknown;
  readonly pattern?: unknown;
}

const patternFormats: ReadonlySet<string> = new Set(['regex', 'datetime']);

/** zod's checks that depend on the value alone: lengths and string formats (patterns, dates, e-mail and so on), not refinements. */
const valueOnlyChecks: ReadonlySet<string> = new Set([
  'max_length',
  'min_length',
  'length_equals',
  'string_format',
]);

function valueChecksOnly(node: ZodNode): boolean {
  return checksOf(node).every((check) => valueOnlyChecks.has(check._zod.def.check ?? ''));
}

/** The node's zod checks in zod's order: a string format (`z.iso.datetime()`) is its own first check. */
function checksOf(node: ZodNode): ZodCheck[] {
  const checks = [...(node._zod.def.checks ?? [])];
  if (node._zod.traits.has('$ZodCheck')) checks.unshift(node as unknown as ZodCheck);
  return checks;
}

function noChecks(node: ZodNode, path: string): void {
  if (checksOf(node).length > 0) {
    throw new Error(`cannot derive a JSON encoder for checks on a composite at ${path}`);
  }
}

function required<T>(value: T | undefined, path: string): T {
  if (value === undefined) throw new Error(`the zod schema at ${path} lacks what its type needs`);
  return value;
}
