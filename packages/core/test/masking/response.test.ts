import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compileMasking, MaskingError } from '../../src/masking/index.ts';
import type { MaskingRule } from '../../src/policy/schema.ts';

const options = { hashKey: new Uint8Array(32) };

function responseRule(
  name: string,
  responseFields: string[],
  scopes: MaskingRule['scopes'] = ['response'],
): MaskingRule {
  return { name, detectors: ['email'], patterns: [], operator: 'redact', scopes, responseFields };
}

test('named response fields are masked and vectors are left as they are', () => {
  const engine = compileMasking([responseRule('echo', ['texts', 'meta.echo'])], options);
  const vectors = [
    [0.1, 0.2, 0.3],
    [0.4, 0.5, 0.6],
  ];
  const data = [{ embedding: vectors[0], index: 0 }];
  const body = {
    texts: ['mail a@example.com', 'no match'],
    vectors,
    data,
    meta: { echo: 'b@example.com', model: 'm@example.com' },
    other: 'c@example.com',
  };
  const { body: masked, actions } = engine.maskResponse(body, 'response');
  assert.deepEqual(masked, {
    texts: ['mail [EMAIL]', 'no match'],
    vectors,
    data,
    meta: { echo: '[EMAIL]', model: 'm@example.com' },
    other: 'c@example.com',
  });
  const result = masked as typeof body;
  assert.equal(result.vectors, vectors, 'the vectors array is shared, not copied');
  assert.equal(result.data, data);
  assert.equal(body.texts[0], 'mail a@example.com', 'the original body is not modified');
  assert.equal(body.meta.echo, 'b@example.com');
  assert.deepEqual(
    actions.map((a) => a.field),
    ['response.texts[0]', 'response.meta.echo'],
  );
});

test('paths cross arrays of objects', () => {
  const engine = compileMasking([responseRule('results', ['results.document.text'])], options);
  const embedding = [1, 2, 3];
  const body = {
    results: [
      { document: { text: 'x@example.com' }, embedding },
      { document: { text: 'clean' }, embedding },
    ],
  };
  const { body: masked, actions } = engine.maskResponse(body);
  const results = (masked as typeof body).results;
  assert.equal(results[0]?.document.text, '[EMAIL]');
  assert.equal(results[1], body.results[1], 'unchanged elements are shared');
  assert.equal(results[0]?.embedding, embedding);
  assert.deepEqual(
    actions.map((a) => a.field),
    ['results[0].document.text'],
  );
});

test('paths cross arrays of arrays', () => {
  const engine = compileMasking([responseRule('results', ['results.text'])], options);
  const body = { results: [[{ text: 'a@b.io' }, { text: 'clean' }], [[{ text: 'c@d.io' }]]] };
  const { body: masked, actions } = engine.maskResponse(body);
  assert.deepEqual(masked, { results: [[{ text: '[EMAIL]' }, { text: 'clean' }], [[{ text: '[EMAIL]' }]]] });
  assert.deepEqual(
    actions.map((a) => a.field),
    ['results[0][0].text', 'results[1][0][0].text'],
  );
});

test('a body with nothing to mask comes back as the same object', () => {
  const engine = compileMasking([responseRule('echo', ['texts'])], options);
  const body = { texts: ['clean'], vectors: [[1, 2]] };
  assert.equal(engine.maskResponse(body).body, body);
  const topLevelVectors = [[0.1, 0.2]];
  assert.equal(engine.maskResponse(topLevelVectors).body, topLevelVectors);
  assert.equal(engine.maskResponse(null).body, null);
});

test("reached says whether the rules name anything in a body: an object met, across arrays, holds a path's first key", () => {
  const engine = compileMasking([responseRule('echo', ['texts', 'meta.echo'])], options);
  // Nothing masked, yet named: the caller must get what was checked.
  assert.equal(engine.maskResponse({ texts: ['clean'] }).reached, true);
  assert.equal(engine.maskResponse({ meta: {} }).reached, true);
  assert.equal(engine.maskResponse([[{ texts: 'x' }]]).reached, true);
  // An OpenAI answer, a TEI one (arrays of numbers), nothing: no rule names anything.
  const openai = { object: 'list', data: [{ embedding: [0.1], index: 0 }], model: 'm' };
  assert.equal(engine.maskResponse(openai).reached, false);
  assert.equal(engine.maskResponse([[0.1, 0.2]]).reached, false);
  assert.equal(engine.maskResponse(null).reached, false);
  assert.equal(compileMasking([], options).maskResponse({ texts: ['x'] }).reached, false);
});

test('missing and non-string fields are left alone, inherited keys are never followed', () => {
  const engine = compileMasking([responseRule('echo', ['texts', 'constructor.name', 'count'])], options);
  const body = { texts: [1, 'a@example.com', null], count: 3 };
  const { body: masked } = engine.maskResponse(body);
  assert.deepEqual(masked, { texts: [1, '[EMAIL]', null], count: 3 });
  const parsed = JSON.parse('{"__proto__": {"polluted": "a@example.com"}}') as Record<string, unknown>;
  const viaProto = compileMasking([responseRule('proto', ['__proto__.polluted'])], options).maskResponse(
    parsed,
  );
  assert.deepEqual(Object.getOwnPropertyDescriptor(viaProto.body, '__proto__')?.value, {
    polluted: '[EMAIL]',
  });
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

test('a named field holding arrays or objects is masked in every string below it', () => {
  const engine = compileMasking([responseRule('echo', ['texts', 'meta'])], options);
  const vector = [0.1, 0.2];
  const body = {
    texts: [['a@example.com', 'clean'], { quoted: { text: 'b@example.com' } }, [[['c@example.com']]]],
    meta: { echo: ['d@example.com'], n: 2, vector },
  };
  const { body: masked, actions } = engine.maskResponse(body);
  assert.deepEqual(masked, {
    texts: [['[EMAIL]', 'clean'], { quoted: { text: '[EMAIL]' } }, [[['[EMAIL]']]]],
    meta: { echo: ['[EMAIL]'], n: 2, vector },
  });
  assert.equal((masked as typeof body).meta.vector, vector, 'what holds no string is shared');
  assert.deepEqual(body.texts[0], ['a@example.com', 'clean'], 'the original body is not modified');
  assert.deepEqual(
    actions.map((a) => a.field),
    ['texts[0][0]', 'texts[1].*.*', 'texts[2][0][0][0]', 'meta.*[0]'],
  );
  const parsed = JSON.parse('{"texts": {"__proto__": "e@example.com"}}') as { texts: object };
  const viaProto = engine.maskResponse(parsed).body as { texts: object };
  assert.equal(Object.getOwnPropertyDescriptor(viaProto.texts, '__proto__')?.value, '[EMAIL]');
  assert.equal(Object.getPrototypeOf(viaProto.texts), Object.prototype);
});

test('only response-scoped rules touch responses and only their fields', () => {
  const engine = compileMasking(
    [
      responseRule('forward-only', ['texts'], ['forward']),
      { ...responseRule('phones', ['meta.echo']), detectors: ['phone'] },
    ],
    options,
  );
  const body = { texts: ['a@example.com'], meta: { echo: 'a@example.com +44 20 7946 0958' } };
  assert.deepEqual(engine.maskResponse(body).body, {
    texts: ['a@example.com'],
    meta: { echo: 'a@example.com [PHONE]' },
  });
  assert.ok(engine.hasScope('response'));
  assert.ok(!compileMasking([responseRule('f', [], ['forward'])], options).hasScope('response'));
});

test('response failures fail closed', () => {
  const engine = compileMasking([responseRule('echo', ['texts'])], options);
  const body = {
    get texts(): string[] {
      throw new Error('a@example.com');
    },
  };
  assert.throws(
    () => engine.maskResponse(body),
    (error: unknown) => error instanceof MaskingError && !error.message.includes('a@example.com'),
  );
});

test('the record names the field the rule names, never a key the model chose', () => {
  const engine = compileMasking([responseRule('echo', ['texts'])], options);
  const body = {
    texts: [{ 'a@example.com': 'b@example.com' }, { nested: { 'c@example.com': 'd@example.com' } }],
  };
  const { body: masked, actions } = engine.maskResponse(body, 'response');
  assert.deepEqual(masked, {
    texts: [{ 'a@example.com': '[EMAIL]' }, { nested: { 'c@example.com': '[EMAIL]' } }],
  });
  assert.deepEqual(
    actions.map((a) => [a.field, a.count]),
    [
      ['response.texts[0].*', 1],
      ['response.texts[1].*.*', 1],
    ],
  );
  assert.ok(!JSON.stringify(actions).includes('@example.com'));
});
