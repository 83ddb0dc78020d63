import assert from 'node:assert/strict';
import { test } from 'node:test';
import { z } from 'zod';
import { compileJsonEncoder } from '../../src/evidence/line-encoder.ts';
import { type AuditRecordInput, auditRecordSchema } from '../../src/evidence/record.ts';
import { fullRecord, record } from './fixtures.ts';

const encodeRecord = compileJsonEncoder(auditRecordSchema);

/** What zod itself makes of a value: the JSON of its parse, or undefined when it refuses it. */
function zodJson(schema: z.ZodType, value: unknown): string | undefined {
  const result = schema.safeParse(value);
  return result.success ? JSON.stringify(result.data) : undefined;
}

/** Every optional field set, with strings JSON must escape and numbers it must spell. */
const full: AuditRecordInput = {
  ...fullRecord('prod/ml/uid/0', 7),
  identity: { issuer: 'https://issuer.example', subject: 'ałice "the" \\ admin\n', groups: ['ml', '😀'] },
  inputs: [{ digest: 'hmac-sha256:00' }, { masked: 'mail [EMAIL]\u0001' }, { masked: '' }],
  latency: { totalMs: 0.000_001, authMs: 1e-7, maskMs: 0, approvalMs: 60_000, upstreamMs: 12.25, spoolMs: 3 },
};

/** Wrong values tried in place of every field, each of which zod refuses somewhere. */
const wrongValues: unknown[] = [
  undefined,
  null,
  '',
  'x'.repeat(513),
  '😀'.repeat(300),
  'not-an-enum',
  '2025-06-01T12:00:00Z',
  -1,
  0,
  1.5,
  2 ** 53,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  true,
  [],
  [''],
  {},
  { extra: 1 },
];

/** Every path to a field in `value`, with the value there. */
function* fields(value: unknown, path: (string | number)[] = []): Generator<(string | number)[]> {
  if (value === null || typeof value !== 'object') return;
  for (const [key, item] of Object.entries(value)) {
    const at = [...path, Array.isArray(value) ? Number(key) : key];
    yield at;
    yield* fields(item, at);
  }
}

function replaced(value: unknown, path: readonly (string | number)[], replacement: unknown): unknown {
  if (path.length === 0) return replacement;
  const [head, ...rest] = path as [string | number, ...(string | number)[]];
  const copy = (Array.isArray(value) ? [...value] : { ...(value as object) }) as Record<
    string | number,
    unknown
  >;
  copy[head] = replaced(copy[head], rest, replacement);
  return copy;
}

test('records encode to the bytes zod gives, and both refuse the same values', () => {
  const base = [record('prod/ml/uid/0', 0), full];
  let compared = 0;
  let refused = 0;
  for (const valid of base) {
    assert.equal(encodeRecord(valid), JSON.stringify(auditRecordSchema.parse(valid)));
    for (const path of fields(valid)) {
      for (const wrong of wrongValues) {
        const value = replaced(valid, path, wrong);
        const expected = zodJson(auditRecordSchema, value);
        assert.equal(encodeRecord(value), expected, `${path.join('.')} = ${JSON.stringify(wrong)}`);
        compared += 1;
        if (expected === undefined) refused += 1;
      }
      const extra = replaced(valid, [...path.slice(0, -1), 'unexpected'], 'x');
      assert.equal(encodeRecord(extra), zodJson(auditRecordSchema, extra));
    }
  }
  // The corpus must exercise both answers, or the comparison proves little.
  assert.ok(refused > 500 && compared - refused > 100, `${refused} refused of ${compared}`);
});

test('defaults are filled, left-out optional fields are left out, keys come in schema order', () => {
  const { kind: _kind, masking: _masking, ...bare } = record('prod/ml/uid/0', 1);
  const json = encodeRecord({ ...Object.fromEntries(Object.entries(bare).reverse()), error: undefined });
  assert.ok(json);
  const parsed = JSON.parse(json);
  assert.equal(parsed.kind, 'request');
  assert.deepEqual(parsed.masking, []);
  assert.equal('error' in parsed, false);
  assert.deepEqual(Object.keys(parsed), Object.keys(auditRecordSchema.parse(bare)));
});

test('commas are right whichever optional fields come first or are left out', () => {
  const schema = z.strictObject({
    a: z.string().optional(),
    b: z.number().optional(),
    c: z.string().default('c'),
    d: z.string().optional(),
  });
  const encode = compileJsonEncoder(schema);
  for (const a of [undefined, 'a']) {
    for (const b of [undefined, 2]) {
      for (const d of [undefined, 'd']) {
        const value = { a, b, d };
        assert.equal(encode(value), zodJson(schema, value), JSON.stringify(value));
      }
    }
  }
  assert.equal(compileJsonEncoder(z.object({ a: z.string().optional() }))({}), '{}');
});

test('non-records are refused', () => {
  for (const value of [undefined, null, 'record', 42, [], [record('prod/ml/uid/0', 0)]]) {
    assert.equal(encodeRecord(value), undefined);
  }
  const inherited = Object.assign(Object.create({ inherited: true }), record('prod/ml/uid/0', 0));
  assert.equal(encodeRecord(inherited), zodJson(auditRecordSchema, inherited));
  assert.equal(encodeRecord(inherited), undefined);
});

test('an object that is not strict drops unknown keys, as zod does', () => {
  const encode = compileJsonEncoder(z.object({ a: z.string() }));
  assert.equal(encode({ b: 1, a: 'x' }), '{"a":"x"}');
  assert.equal(encode({ b: 1 }), undefined);
});

test('a union takes the first option that matches, as zod does', () => {
  const schema = z.union([z.object({ a: z.string() }), z.strictObject({ a: z.string(), b: z.number() })]);
  const value = { a: 'x', b: 1 };
  assert.equal(compileJsonEncoder(schema)(value), zodJson(schema, value));
  assert.equal(compileJsonEncoder(schema)(value), '{"a":"x"}');
});

test('a string checked by its value alone is checked once while it repeats; a refused one is never remembered', () => {
  class CountingPattern extends RegExp {
    tests = 0;
    override test(value: string): boolean {
      this.tests += 1;
      return super.test(value);
    }
  }
  const pattern = new CountingPattern('^[a-z]+$');
  const encode = compileJsonEncoder(z.string().max(3).regex(pattern));
  assert.equal(encode('abc'), '"abc"');
  assert.equal(encode(['a', 'b', 'c'].join('')), '"abc"');
  assert.equal(pattern.tests, 1);
  for (const refused of ['abcd', 'abcd', 'AB', 'AB']) assert.equal(encode(refused), undefined);
  assert.equal(encode('xyz'), '"xyz"');
  assert.equal(encode('abc'), '"abc"');
  assert.equal(pattern.tests, 5);
  assert.equal(encode(undefined), undefined);
});

test('a bound or pattern checked inline still applies only where zod applies it', () => {
  // zod's own condition on a check, which its public parameters do not offer.
  const skipped = <T extends { _zod: { def: object } }>(check: T): T => {
    Object.assign(check._zod.def, { when: () => false });
    return check;
  };
  for (const [schema, value] of [
    [z.number().check(skipped(z.gte(5))), 1],
    [z.int().check(skipped(z.lte(5))), 9],
    [z.string().check(skipped(z.regex(/^a$/))), 'b'],
  ] as const) {
    assert.equal(compileJsonEncoder(schema)(value), zodJson(schema, value));
  }
  assert.equal(compileJsonEncoder(z.number().min(5))(1), undefined);
});

test('a string with a refinement is checked every time: the refinement may look beyond the string', () => {
  let allowed = true;
  const encode = compileJsonEncoder(z.string().refine(() => allowed));
  assert.equal(encode('x'), '"x"');
  allowed = false;
  assert.equal(encode('x'), undefined);
});

test('an asynchronous refinement counts as a refusal, so zod decides', () => {
  const encode = compileJsonEncoder(z.string().refine(async () => true));
  assert.equal(encode('x'), undefined);
});

test('schema kinds it does not understand are refused when compiling', () => {
  const unsupported: [string, z.ZodType][] = [
    ['transform', z.string().transform((value) => value.length)],
    ['map', z.map(z.string(), z.string())],
    ['catchall', z.object({}).catchall(z.string())],
    ['object refinement', z.object({ a: z.string() }).refine(() => true)],
    ['boolean', z.boolean()],
  ];
  for (const [what, schema] of unsupported) {
    assert.throws(() => compileJsonEncoder(schema), /cannot derive a JSON encoder/, what);
  }
});
