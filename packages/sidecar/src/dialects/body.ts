import type { z } from 'zod';
import { DialectError } from './types.ts';

type Issue = z.core.$ZodIssue;

/**
 * Validates a request body against a dialect's schema. The first problem becomes a 400 naming
 * the field, e.g. `'input[2]' must not be an empty string`, so a caller can fix it without docs.
 */
export function readBody<S extends z.ZodType>(schema: S, body: unknown): z.output<S> {
  refuseCaseVariants(schema, body);
  // The input is reported so a missing field reads "is required" rather than a type mismatch.
  const result = schema.safeParse(body, { reportInput: true });
  if (result.success) return result.data;
  const first = result.error.issues[0];
  if (first === undefined) throw new DialectError(400, 'request body is invalid');
  const issue = specific(first);
  const field = fieldName(issue.path);
  if (field === null) throw new DialectError(400, `request body ${issue.message}`);
  // JSON carries no undefined, so an undefined input is an absent field.
  const problem = first.input === undefined ? 'is required' : issue.message;
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

/**
 * When a value has the type of exactly one branch of a union, that branch's own complaint
 * ("must not be an empty array") says more than the union's list of accepted shapes. A branch
 * fits when nothing in it is of the wrong type: only its checks failed.
 */
function specific(issue: Issue): Issue {
  if (issue.code !== 'invalid_union') return issue;
  const fitting = issue.errors.filter(
    (branch) => branch.length > 0 && branch.every((inner) => inner.code !== 'invalid_type'),
  );
  const inner = fitting.length === 1 ? fitting[0]?.[0] : undefined;
  if (inner === undefined) return issue;
  return specific({ ...inner, path: [...issue.path, ...inner.path] });
}

function fieldName(path: readonly PropertyKey[]): string | null {
  let name = '';
  for (const key of path) {
    if (typeof key === 'number') name += `[${key}]`;
    else name += name === '' ? String(key) : `.${String(key)}`;
  }
  return name === '' ? null : name;
}
