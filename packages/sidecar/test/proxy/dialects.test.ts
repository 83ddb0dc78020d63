// TEI, Ollama and Cohere callers over plain HTTP: good calls answered as the
// model would, and every refusal in the caller's own error shape.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { call, type SidecarFixture, startSidecarFixture } from '../fixtures/sidecar.ts';

interface DialectCase {
  readonly api: 'tei' | 'ollama' | 'cohere';
  readonly path: string;
  /** A good body embedding the given texts. */
  readonly body: (texts: string[]) => unknown;
  /** The vectors of a good answer. */
  readonly vectors: (json: unknown) => unknown[];
  /** A body whose texts have the wrong type. */
  readonly wrongType: unknown;
  /** The error shape: the message under its key, plus any fixed members. */
  readonly error: (message: RegExp) => (json: unknown) => void;
  readonly model: string | null;
}

const object = (json: unknown): Record<string, unknown> => {
  assert.equal(typeof json, 'object');
  assert.notEqual(json, null);
  return json as Record<string, unknown>;
};

const teiError = (type: string) => (message: RegExp) => (json: unknown) => {
  const body = object(json);
  assert.deepEqual(Object.keys(body).sort(), ['error', 'error_type']);
  assert.match(String(body.error), message);
  assert.equal(body.error_type, type);
};
const onlyKey = (key: string) => (message: RegExp) => (json: unknown) => {
  const body = object(json);
  assert.deepEqual(Object.keys(body), [key]);
  assert.match(String(body[key]), message);
};

const cases: readonly (DialectCase & { unauthenticatedError: DialectCase['error'] })[] = [
  {
    api: 'tei',
    path: '/embed',
    body: (texts) => ({ inputs: texts }),
    vectors: (json) => json as unknown[],
    wrongType: { inputs: [1, 2] },
    error: teiError('Validation'),
    unauthenticatedError: teiError('Unauthorized'),
    model: 'default',
  },
  {
    api: 'ollama',
    path: '/api/embed',
    body: (texts) => ({ model: 'nomic-embed-text', input: texts }),
    vectors: (json) => object(json).embeddings as unknown[],
    wrongType: { model: 'nomic-embed-text', input: 42 },
    error: onlyKey('error'),
    unauthenticatedError: onlyKey('error'),
    model: 'nomic-embed-text',
  },
  {
    api: 'ollama',
    path: '/api/embeddings',
    body: (texts) => ({ model: 'nomic-embed-text', prompt: texts[0] }),
    vectors: (json) => [object(json).embedding],
    wrongType: { model: 'nomic-embed-text', prompt: ['not', 'a', 'string'] },
    error: onlyKey('error'),
    unauthenticatedError: onlyKey('error'),
    model: 'nomic-embed-text',
  },
  {
    api: 'cohere',
    path: '/v2/embed',
    body: (texts) => ({
      model: 'embed-v4.0',
      texts,
      input_type: 'search_document',
      embedding_types: ['float'],
    }),
    vectors: (json) => object(object(json).embeddings).float as unknown[],
    wrongType: { model: 'embed-v4.0', texts: 'one string', input_type: 'search_document' },
    error: onlyKey('message'),
    unauthenticatedError: onlyKey('message'),
    model: 'embed-v4.0',
  },
  {
    api: 'cohere',
    path: '/v1/embed',
    body: (texts) => ({ model: 'embed-english-v3.0', texts }),
    vectors: (json) => object(json).embeddings as unknown[],
    wrongType: { texts: [{ text: 'nested' }] },
    error: onlyKey('message'),
    unauthenticatedError: onlyKey('message'),
    model: 'embed-english-v3.0',
  },
];

describe('other dialects over plain HTTP', () => {
  let fixture: SidecarFixture;
  let token: string;

  before(async () => {
    fixture = await startSidecarFixture({ policy: { limits: { maxInputsPerRequest: 3 } } });
    token = await fixture.token();
  });
  after(() => fixture.close());

  for (const dialect of cases) {
    describe(`${dialect.api} ${dialect.path}`, () => {
      const single = dialect.path === '/api/embeddings';
      const texts = single ? ['reset my password'] : ['reset my password', 'quarterly revenue'];

      it('embeds, answering as the model does and recording it', async () => {
        const sent = dialect.body(texts);
        const answer = await call(`${fixture.url}${dialect.path}`, sent, { token });
        assert.equal(answer.status, 200, answer.text);
        const vectors = dialect.vectors(answer.json);
        assert.equal(vectors.length, texts.length);
        for (const vector of vectors) assert.equal((vector as number[]).length, 384);
        const { path, body } = fixture.upstreamCalls.at(-1) ?? {};
        assert.deepEqual({ path, body }, { path: dialect.path, body: sent });
        const record = fixture.records().at(-1);
        assert.equal(record?.api, dialect.api);
        assert.equal(record?.route, dialect.path);
        assert.equal(record?.outcome, 'allowed');
        assert.equal(record?.model, dialect.model);
        assert.equal(record?.inputCount, texts.length);
        assert.deepEqual(record?.vectors && [record.vectors.count, record.vectors.dimensions], [
          texts.length,
          384,
        ]);
      });

      it('answers a body of the wrong type 400 in its own shape, without calling the model', async () => {
        const calls = fixture.upstreamCalls.length;
        const answer = await call(`${fixture.url}${dialect.path}`, dialect.wrongType, { token });
        assert.equal(answer.status, 400);
        dialect.error(/must/)(answer.json);
        assert.equal(fixture.upstreamCalls.length, calls);
        assert.equal(fixture.records().at(-1)?.outcome, 'invalid');
      });

      it('answers malformed JSON 400 in its own shape', async () => {
        const answer = await call(`${fixture.url}${dialect.path}`, '{"inputs": [', { token });
        assert.equal(answer.status, 400);
        dialect.error(/not valid JSON/)(answer.json);
      });

      it('answers a missing token 401 in its own shape', async () => {
        const answer = await call(`${fixture.url}${dialect.path}`, dialect.body(texts));
        assert.equal(answer.status, 401);
        dialect.unauthenticatedError(/Authorization/)(answer.json);
        assert.equal(fixture.records().at(-1)?.outcome, 'unauthenticated');
      });

      if (!single) {
        it('answers too many inputs 413 in its own shape', async () => {
          const answer = await call(`${fixture.url}${dialect.path}`, dialect.body(['a', 'b', 'c', 'd']), {
            token,
          });
          assert.equal(answer.status, 413);
          dialect.error(/4 inputs exceed the limit of 3/)(answer.json);
        });
      }
    });
  }

  it('answers a model the caller may not use 403 in the caller dialect', async () => {
    const denied = await startSidecarFixture({
      policy: {
        access: {
          rules: [
            { name: 'team', groups: ['ml-team'], models: ['*'] },
            { name: 'not-large', action: 'deny', groups: ['ml-team'], models: ['*-large'] },
          ],
        },
      },
    });
    try {
      const bearer = await denied.token();
      const ollama = await call(
        `${denied.url}/api/embed`,
        { model: 'mxbai-embed-large', input: 'x' },
        { token: bearer },
      );
      assert.equal(ollama.status, 403);
      onlyKey('error')(/may not use model mxbai-embed-large/)(ollama.json);
      const cohere = await call(
        `${denied.url}/v2/embed`,
        { model: 'embed-large', texts: ['x'], input_type: 'search_query' },
        { token: bearer },
      );
      assert.equal(cohere.status, 403);
      onlyKey('message')(/may not use model embed-large/)(cohere.json);
      assert.equal(denied.upstreamCalls.length, 0);
    } finally {
      await denied.close();
    }
  });

  it('serves only the configured API when one is set', async () => {
    const teiOnly = await startSidecarFixture({ api: 'tei' });
    try {
      const bearer = await teiOnly.token();
      const tei = await call(`${teiOnly.url}/embed`, { inputs: 'x' }, { token: bearer });
      assert.equal(tei.status, 200);
      const openai = await call(
        `${teiOnly.url}/v1/embeddings`,
        { model: 'm', input: 'x' },
        { token: bearer },
      );
      assert.equal(openai.status, 404);
      assert.deepEqual(
        teiOnly.upstreamCalls.map((c) => c.path),
        ['/embed'],
      );
    } finally {
      await teiOnly.close();
    }
  });
});
