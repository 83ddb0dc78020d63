import type { z } from 'zod';
import { DialectError } from './types.ts';

/**
 * Validates a request body against a dialect's schema. The first problem becomes a 400 naming
 * the field, e.g. `'input[2]' must not be an empty string`, so a caller can fix it without docs.
 */
export function readBody<S extends z.ZodType>(schema: S, body: unknown): z.output<S> {
  refuseCaseVariants(schema, body);
  const result = schema.safeParse(body);
  if (result.success) return result.data;
  const first = result.error.issues[0];
  if (first === undefined) throw new DialectError(400, 'request body is invalid');
  const field = fieldName(first.path);
  if (field === null) throw new DialectError(400, `request body ${first.message}`);
  // JSON carries no undefined, so an undefined value is an absent field.
  const problem = valueAt(body, first.path) === undefined ? 'is required' : first.message;
  throw new DialectError(400, `'${field}' ${problem}`, { param: field });
}

/**
 * Refuses a field named like one of the schema's but in other case (`Input`
 * beside `input`). Veil reads only the exact name, while a model server that
 * matches names regardless of case (Go's encoding/json, as Ollama's) would
 * read the other one: unmasked text, another model, uncounted inputs.
 */
function refuseCaseVariants(schema: z.ZodType, body: unknown): void {
  const shape = (schema as { shape?: Record<string, unknown> }).shape;
  if (shape === undefined || typeof body !== 'object' || body === null || Array.isArray(body)) return;
  const known = new Map(Object.keys(shape).map((name) => [name.toLowerCase(), name]));
  for (const key of Object.keys(body)) {
    const name = known.get(key.toLowerCase());
    if (name !== undefined && name !== key) {
      throw new DialectError(400, `'${key}' is not '${name}': field names are matched exactly`, {
        param: key,
      });
    }
  }
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
