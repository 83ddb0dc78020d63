import type { z } from 'zod';
import { DialectError } from './types.ts';

/**
 * Validates a request body against a dialect's schema. The first problem becomes a 400 naming
 * the field, e.g. `'input[2]' must not be an empty string`, so a caller can fix it without docs.
 *
 * The schemas are strict: they list every top-level field Veil checks, and a body with any other
 * is refused, naming it. Veil masks and counts only the fields it knows, and forwards every
 * other field as it came, so a field it does not know (vLLM's `messages` beside OpenAI's
 * `input`) would reach the model unmasked, or change what the model answers behind the
 * record's back.
 */
export function readBody<S extends z.ZodType>(schema: S, body: unknown): z.output<S> {
  refuseUncheckedNames(schema, body);
  const result = schema.safeParse(body);
  if (result.success) return result.data;
  const issues = result.error.issues;
  const unknown = issues.find((issue) => issue.code === 'unrecognized_keys' && issue.path.length === 0);
  const [unknownKey] = unknown?.code === 'unrecognized_keys' ? unknown.keys : [];
  if (unknownKey !== undefined) throw notChecked(unknownKey);
  const first = issues[0];
  if (first === undefined) throw new DialectError(400, 'request body is invalid');
  const field = fieldName(first.path);
  if (field === null) throw new DialectError(400, `request body ${first.message}`);
  // JSON carries no undefined, so an undefined value is an absent field.
  const problem = valueAt(body, first.path) === undefined ? 'is required' : first.message;
  throw new DialectError(400, `'${field}' ${problem}`, { param: field });
}

/**
 * Refuses a field named like one of the schema's but in other case (`Input`
 * beside `input`), and any field whose name is not ASCII. Veil reads only the
 * exact name, while a model server that matches names regardless of case would
 * read the other one: unmasked text, another model, uncounted inputs. Go's
 * encoding/json (Ollama's, and other servers') folds more than ASCII case:
 * `dimenſions` (U+017F, long s) sets `dimensions`, `textſ` sets `texts`, the
 * Kelvin sign is a `k`. No field of any dialect is named outside ASCII, so
 * none of those names is one Veil would need to read.
 */
function refuseUncheckedNames(schema: z.ZodType, body: unknown): void {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return;
  const shape = (schema as { shape?: Record<string, unknown> }).shape;
  const known = new Map(Object.keys(shape ?? {}).map((name) => [name.toLowerCase(), name]));
  for (const key of Object.keys(body)) {
    const foreign = [...key].find((character) => (character.codePointAt(0) ?? 0) > 0x7f);
    if (foreign !== undefined)
      throw notChecked(key, `: its name holds ${codePoint(foreign)}, which is not ASCII`);
    const name = known.get(key.toLowerCase());
    if (name !== undefined && name !== key) {
      throw new DialectError(400, `'${key}' is not '${name}': field names are matched exactly`, {
        param: key,
      });
    }
  }
}

/** Names the caller gave are shown up to this length. */
const MAX_SHOWN_NAME = 64;

/**
 * A 400 for a top-level field Veil does not check, naming it as the caller can
 * find it in the body. The record does not name it: a name the caller chose
 * may hold anything a value could.
 */
function notChecked(key: string, why = ''): DialectError {
  const name = key.length > MAX_SHOWN_NAME ? `${key.slice(0, MAX_SHOWN_NAME)}…` : key;
  return new DialectError(400, `field ${JSON.stringify(name)} is not one Veil can check${why}; remove it`, {
    param: name,
    detail: `a top-level field Veil does not check${why ? ' (its name is not ASCII)' : ''}; its name is not recorded`,
  });
}

/** `U+017F`: how a message names a character that may look like another. */
function codePoint(character: string): string {
  return `U+${(character.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`;
}

/** The value at `path` in `body`; undefined where nothing is, inherited properties included. */
function valueAt(body: unknown, path: readonly PropertyKey[]): unknown {
  let value = body;
  for (const key of path) {
    if (typeof value !== 'object' || value === null || !Object.hasOwn(value, key)) return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}

function fieldName(path: readonly PropertyKey[]): string | null {
  let name = '';
  for (const key of path) {
    if (typeof key === 'number') name += `[${key}]`;
    else name += name === '' ? String(key) : `.${String(key)}`;
  }
  return name === '' ? null : name;
}
