import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { vectorsDigest } from '@veil/core';
import { type DemoModel, embedText, startDemoModel } from '../../src/demo/model.ts';
import { dialectFor } from '../../src/dialects/index.ts';

function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  for (let i = 0; i < a.length; i++) dot += (a[i] ?? 0) * (b[i] ?? 0);
  return dot;
}

describe('embedText', () => {
  it('gives the same unit vector for the same text', () => {
    const first = embedText('Reset my password, please', 384);
    const second = embedText('Reset my password, please', 384);
    assert.notEqual(first, second);
    assert.deepEqual(first, second);
    assert.equal(first.length, 384);
    assert.ok(Math.abs(cosine(first, first) - 1) < 1e-5);
  });

  it('ignores case and punctuation between words', () => {
    assert.deepEqual(embedText('Hello, World!', 64), embedText('hello world', 64));
  });

  it('puts paraphrases closer than unrelated texts', () => {
    const triples = [
      [
        'How do I reset my password?',
        'How can I reset the password of my account',
        'Quarterly revenue grew ten percent',
      ],
      ['The cat sat on the mat', 'A cat was sitting on the mat', 'Interest rates rose again in March'],
      [
        'Kubernetes pods restart after a crash',
        'pods restarted by Kubernetes when they crash',
        'Bake the bread at 220 degrees',
      ],
    ] as const;
    for (const [text, paraphrase, unrelated] of triples) {
      const vector = embedText(text, 384);
      const near = cosine(vector, embedText(paraphrase, 384));
      const far = cosine(vector, embedText(unrelated, 384));
      assert.ok(near > far + 0.2, `${text}: paraphrase ${near.toFixed(3)} vs unrelated ${far.toFixed(3)}`);
    }
  });

  it('relates word forms through their trigrams', () => {
    const base = embedText('resetting', 384);
    assert.ok(cosine(base, embedText('reset', 384)) > cosine(base, embedText('invoice', 384)));
  });

  it('gives a text without words a unit vector all the same', () => {
    const vector = embedText('', 8);
    assert.equal(cosine(vector, vector), 1);
  });
});

describe('demo model over HTTP', () => {
  let model: DemoModel;
  const seen: { path: string; body: unknown }[] = [];

  before(async () => {
    model = await startDemoModel({ onRequest: (path, body) => seen.push({ path, body }) });
  });
  after(() => model.close());

  async function post(path: string, body: unknown): Promise<{ status: number; json: unknown }> {
    const response = await fetch(`${model.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    return { status: response.status, json: await response.json() };
  }

  /** Posts, checks the answer with the path's dialect, and returns it. */
  async function embed(path: string, body: unknown, count: number, dimensions: number): Promise<unknown> {
    const { status, json } = await post(path, body);
    assert.equal(status, 200, JSON.stringify(json));
    const summary = dialectFor('auto', path)?.vectors(json, path);
    assert.equal(summary?.count, count);
    assert.equal(summary?.dimensions, dimensions);
    return json;
  }

  it('answers OpenAI with the vectors of embedText', async () => {
    const json = (await embed(
      '/v1/embeddings',
      { model: 'text-embedding-3-small', input: ['a b', 'c'] },
      2,
      384,
    )) as {
      data: { index: number; embedding: number[] }[];
      model: string;
      usage: { prompt_tokens: number };
    };
    assert.equal(json.model, 'text-embedding-3-small');
    assert.deepEqual(
      json.data.map((item) => item.index),
      [0, 1],
    );
    assert.deepEqual(Float32Array.from(json.data[1]?.embedding ?? []), embedText('c', 384));
    assert.ok(json.usage.prompt_tokens > 0);
  });

  it('answers OpenAI base64 with the bytes of the float vector', async () => {
    const body = { model: 'm', input: 'the same text', encoding_format: 'base64' };
    const json = (await embed('/v1/embeddings', body, 1, 384)) as { data: { embedding: string }[] };
    const bytes = Buffer.from(json.data[0]?.embedding ?? '', 'base64');
    const decoded = Float32Array.from({ length: bytes.length / 4 }, (_, i) => bytes.readFloatLE(i * 4));
    const floats = (await post('/v1/embeddings', { model: 'm', input: 'the same text' })).json as {
      data: { embedding: number[] }[];
    };
    assert.deepEqual(decoded, Float32Array.from(floats.data[0]?.embedding ?? []));
  });

  it('honours OpenAI dimensions and token inputs, and refuses more dimensions than it has', async () => {
    await embed('/v1/embeddings', { model: 'm', input: 'short', dimensions: 64 }, 1, 64);
    await embed('/v1/embeddings', { model: 'm', input: [[10, 20], [30]] }, 2, 384);
    const { status, json } = await post('/v1/embeddings', { model: 'm', input: 'x', dimensions: 4096 });
    assert.equal(status, 400);
    assert.equal((json as { error: { type: string } }).error.type, 'invalid_request_error');
  });

  it('answers TEI with a matrix', async () => {
    const json = await embed('/embed', { inputs: ['one', 'two', 'three'] }, 3, 384);
    assert.ok(Array.isArray(json));
  });

  it('answers Ollama on /api/embed and the legacy /api/embeddings', async () => {
    const json = (await embed('/api/embed', { model: 'nomic-embed-text', input: 'hi' }, 1, 384)) as {
      model: string;
      embeddings: number[][];
    };
    assert.equal(json.model, 'nomic-embed-text');
    const legacy = (await embed('/api/embeddings', { model: 'm', prompt: 'hi' }, 1, 384)) as {
      embedding: number[];
    };
    assert.deepEqual(legacy.embedding, json.embeddings[0]);
  });

  it('answers Cohere v2 by type, echoing texts', async () => {
    const body = {
      model: 'embed-v4.0',
      texts: ['alpha', 'beta'],
      input_type: 'search_query',
      embedding_types: ['float', 'int8', 'uint8', 'binary', 'ubinary', 'base64'],
    };
    const json = (await embed('/v2/embed', body, 2, 384)) as {
      embeddings: Record<string, unknown[]>;
      texts: string[];
      response_type: string;
    };
    assert.deepEqual(json.texts, ['alpha', 'beta']);
    assert.deepEqual(Object.keys(json.embeddings), body.embedding_types);
    const floats = (json.embeddings.float ?? []) as number[][];
    const summary = dialectFor('auto', '/v2/embed')?.vectors(
      { embeddings: { base64: json.embeddings.base64 } },
      '/v2/embed',
    );
    assert.equal(summary?.digest, vectorsDigest(floats));
  });

  it('answers Cohere v1 with a float matrix unless types are asked for', async () => {
    const plain = (await embed('/v1/embed', { texts: ['alpha'] }, 1, 384)) as {
      response_type: string;
      texts: string[];
    };
    assert.equal(plain.response_type, 'embeddings_floats');
    assert.deepEqual(plain.texts, ['alpha']);
    const typed = (await embed('/v1/embed', { texts: ['alpha'], embedding_types: ['int8'] }, 1, 384)) as {
      response_type: string;
    };
    assert.equal(typed.response_type, 'embeddings_by_type');
  });

  it('shows onRequest the body exactly as it arrived', async () => {
    const body = { inputs: 'call me at +1 555 0100', truncate: true };
    await post('/embed', body);
    assert.deepEqual(seen.at(-1), { path: '/embed', body });
  });

  it('answers bad requests in the dialect of the path', async () => {
    const tei = await post('/embed', { inputs: 3 });
    assert.equal(tei.status, 400);
    assert.equal((tei.json as { error_type: string }).error_type, 'Validation');
    const cohere = await post('/v2/embed', '{"texts": [');
    assert.equal(cohere.status, 400);
    assert.deepEqual(cohere.json, { message: 'request body is not valid JSON' });
  });

  it('serves health and the model list, and nothing else', async () => {
    assert.deepEqual(await (await fetch(`${model.url}/health`)).json(), { status: 'ok' });
    const models = (await (await fetch(`${model.url}/v1/models`)).json()) as { data: { id: string }[] };
    assert.equal(models.data[0]?.id, 'veil-demo-embed');
    assert.equal((await fetch(`${model.url}/v1/chat/completions`, { method: 'POST' })).status, 404);
    assert.equal((await fetch(`${model.url}/v1/embeddings`)).status, 405);
  });
});
