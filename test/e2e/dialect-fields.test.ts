// Request fields end to end, over real HTTP through a real sidecar to the demo
// model: a body carrying a top-level field Veil does not check (vLLM's
// `messages`, Cohere v2's `inputs` sent to v1, a name a Go decoder folds into a
// known one) is refused 400 in the caller's own error shape, recorded as
// invalid, and never reaches the model; a body with every option its API
// documents still does, masked where the policy says and otherwise as sent.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { AuditRecord, PolicySpecInput } from '@veil/core';
import {
  call,
  type SidecarFixture,
  startSidecarFixture,
} from '../../packages/sidecar/test/fixtures/sidecar.ts';

const SSN = '123-45-6789';
const EMAIL = 'jane.doe@example.com';

const policy: PolicySpecInput = {
  masking: {
    rules: [{ name: 'pii', detectors: ['email', 'ssn'], operator: 'redact', scopes: ['forward'] }],
  },
};

type Json = Record<string, unknown>;

const object = (json: unknown): Json => {
  assert.equal(typeof json, 'object');
  assert.notEqual(json, null);
  return json as Json;
};

/** OpenAI's error shape, naming the field in `param`, as its SDK reads it. */
const openaiError = (message: RegExp, param: string) => (json: unknown) => {
  const { error } = object(json);
  assert.deepEqual(Object.keys(object(error)).sort(), ['code', 'message', 'param', 'type']);
  assert.match(String(object(error).message), message);
  assert.equal(object(error).param, param);
  assert.equal(object(error).type, 'invalid_request_error');
  assert.equal(object(error).code, 'invalid_request');
};
const teiError = (message: RegExp) => (json: unknown) => {
  assert.deepEqual(Object.keys(object(json)).sort(), ['error', 'error_type']);
  assert.match(String(object(json).error), message);
  assert.equal(object(json).error_type, 'Validation');
};
const onlyKey = (key: string) => (message: RegExp) => (json: unknown) => {
  assert.deepEqual(Object.keys(object(json)), [key]);
  assert.match(String(object(json)[key]), message);
};

interface Refused {
  readonly name: string;
  readonly path: string;
  readonly body: Json;
  readonly api: AuditRecord['api'];
  readonly error: (json: unknown) => void;
}

const refused: readonly Refused[] = [
  {
    // vLLM reads this as an EmbeddingChatRequest and embeds `messages`, unmasked.
    name: 'the vLLM chat body on /v1/embeddings',
    path: '/v1/embeddings',
    body: {
      model: 'm',
      input: 'ok',
      messages: [{ role: 'user', content: `SSN ${SSN}` }],
      add_generation_prompt: false,
    },
    api: 'openai',
    error: openaiError(/^field "messages" is not one Veil can check; remove it$/, 'messages'),
  },
  {
    // Veil would decode the answer as little-endian float32: wrong dimensions, a wrong digest.
    name: "vLLM's embed_dtype and endianness",
    path: '/v1/embeddings',
    body: { model: 'm', input: 'ok', encoding_format: 'base64', embed_dtype: 'float16', endianness: 'big' },
    api: 'openai',
    error: openaiError(/^field "embed_dtype" is not one Veil can check; remove it$/, 'embed_dtype'),
  },
  {
    // Go's encoding/json sets Dimensions from `dimenſions` (U+017F, long s).
    name: 'dimenſions on /v1/embeddings',
    path: '/v1/embeddings',
    body: { model: 'm', input: 'ok', dimenſions: 4096 },
    api: 'openai',
    error: openaiError(
      /^field "dimenſions" is not one Veil can check: its name holds U\+017F, which is not ASCII; remove it$/,
      'dimenſions',
    ),
  },
  {
    name: 'Cohere v2 inputs sent to v1',
    path: '/v1/embed',
    body: { texts: ['ok'], inputs: [{ content: [{ type: 'text', text: `SSN ${SSN}` }] }] },
    api: 'cohere',
    error: onlyKey('message')(/^field "inputs" is not one Veil can check; remove it$/),
  },
  {
    // A Go-based Cohere-compatible server would read `textſ` as `texts`.
    name: 'textſ on /v2/embed',
    path: '/v2/embed',
    body: { model: 'embed-v4.0', input_type: 'search_document', texts: ['ok'], textſ: [`SSN ${SSN}`] },
    api: 'cohere',
    error: onlyKey('message')(/^field "textſ" is not one Veil can check: its name holds U\+017F/),
  },
  {
    name: 'textſ on /v1/embed',
    path: '/v1/embed',
    body: { texts: ['ok'], textſ: [`SSN ${SSN}`] },
    api: 'cohere',
    error: onlyKey('message')(/^field "textſ" is not one Veil can check: its name holds U\+017F/),
  },
  {
    name: 'an unknown field on TEI /embed',
    path: '/embed',
    body: { inputs: 'ok', raw_text: `SSN ${SSN}` },
    api: 'tei',
    error: teiError(/^field "raw_text" is not one Veil can check; remove it$/),
  },
  {
    // Ollama's own decoder is Go's: the Kelvin sign folds to `k`.
    name: 'a Kelvin-sign keep_alive on Ollama /api/embed',
    path: '/api/embed',
    body: { model: 'nomic-embed-text', input: 'ok', '\u212aeep_alive': -1 },
    api: 'ollama',
    error: onlyKey('error')(/its name holds U\+212A, which is not ASCII; remove it$/),
  },
  {
    name: "/api/embed's input sent to the legacy /api/embeddings",
    path: '/api/embeddings',
    body: { model: 'nomic-embed-text', prompt: 'ok', input: [`SSN ${SSN}`] },
    api: 'ollama',
    error: onlyKey('error')(/^field "input" is not one Veil can check; remove it$/),
  },
];

interface Accepted {
  readonly path: string;
  /** Every option the route takes, each set; its texts carry an email to mask. */
  readonly body: Json;
  /** The field holding the texts. */
  readonly field: string;
}

const text = `write to ${EMAIL} today`;

const accepted: readonly Accepted[] = [
  {
    path: '/v1/embeddings',
    body: { model: 'm', input: [text, 'plain'], encoding_format: 'base64', dimensions: 64, user: 'u-1' },
    field: 'input',
  },
  {
    path: '/embeddings',
    body: { model: 'm', input: text, encoding_format: 'float', dimensions: 32, user: null },
    field: 'input',
  },
  {
    path: '/embed',
    body: {
      inputs: [text],
      normalize: true,
      truncate: true,
      truncation_direction: 'Right',
      prompt_name: 'query',
      dimensions: 64,
    },
    field: 'inputs',
  },
  {
    path: '/api/embed',
    body: {
      model: 'nomic-embed-text',
      input: [text, 'plain'],
      truncate: false,
      options: { num_ctx: 2048, seed: 7 },
      keep_alive: '5m',
      dimensions: 64,
    },
    field: 'input',
  },
  {
    path: '/api/embeddings',
    body: { model: 'nomic-embed-text', prompt: text, options: { seed: 7 }, keep_alive: 30 },
    field: 'prompt',
  },
  {
    path: '/v2/embed',
    body: {
      model: 'embed-v4.0',
      texts: [text],
      input_type: 'search_query',
      embedding_types: ['float', 'int8', 'base64'],
      truncate: 'END',
      output_dimension: 256,
      max_tokens: 512,
    },
    field: 'texts',
  },
  {
    path: '/v1/embed',
    body: {
      model: 'embed-english-v3.0',
      texts: [text],
      input_type: 'classification',
      embedding_types: ['float', 'ubinary'],
      truncate: 'START',
    },
    field: 'texts',
  },
];

describe('top-level request fields through the sidecar', () => {
  let fixture: SidecarFixture;
  let token: string;

  before(async () => {
    fixture = await startSidecarFixture({ policy });
    token = await fixture.token();
  });
  after(() => fixture?.close());

  for (const refusal of refused) {
    it(`refuses ${refusal.name} in the caller's error shape; the model receives nothing`, async () => {
      const calls = fixture.upstreamCalls.length;
      const recorded = fixture.records().length;
      const answer = await call(`${fixture.url}${refusal.path}`, refusal.body, { token });
      assert.equal(answer.status, 400, answer.text);
      refusal.error(answer.json);
      assert.equal(fixture.upstreamCalls.length, calls, 'nothing reached the model');
      const records = fixture.records();
      assert.equal(records.length, recorded + 1);
      const record = records.at(-1);
      assert.equal(record?.outcome, 'invalid');
      assert.equal(record?.status, 400);
      assert.equal(record?.api, refusal.api);
      assert.equal(record?.route, refusal.path);
      assert.equal(record?.vectors, undefined);
      // The caller is told the field; the record is not, as a name the caller chose may hold anything.
      assert.match(
        record?.error ?? '',
        /^a top-level field Veil does not check( \(its name is not ASCII\))?; its name is not recorded$/,
      );
      for (const line of fixture.sink.lines) assert.ok(!line.includes(SSN), 'no record holds the value');
    });
  }

  for (const route of accepted) {
    it(`forwards every option ${route.path} takes, the texts masked and the rest as sent`, async () => {
      const calls = fixture.upstreamCalls.length;
      const answer = await call(`${fixture.url}${route.path}`, route.body, { token });
      assert.equal(answer.status, 200, answer.text);
      assert.equal(fixture.upstreamCalls.length, calls + 1);
      const received = fixture.upstreamCalls.at(-1);
      assert.equal(received?.path, route.path);
      const forwarded = object(received?.body);
      assert.ok(!JSON.stringify(forwarded).includes(EMAIL), 'the model never sees the email');
      const { [route.field]: _texts, ...options } = route.body;
      const { [route.field]: maskedTexts, ...forwardedOptions } = forwarded;
      assert.deepEqual(forwardedOptions, options);
      const sent = route.body[route.field];
      assert.equal(Array.isArray(maskedTexts), Array.isArray(sent));
      assert.equal([maskedTexts].flat().length, [sent].flat().length);
      const record = fixture.records().at(-1);
      assert.equal(record?.outcome, 'allowed');
      assert.equal(record?.status, 200);
      assert.equal(record?.route, route.path);
      assert.ok((record?.masking.length ?? 0) > 0, 'the record says the email was masked');
    });
  }

  it('forwards a body with every OpenAI option, unmasked, as sent', async () => {
    const body = {
      model: 'm',
      input: ['nothing to mask'],
      encoding_format: 'float',
      dimensions: 16,
      user: 'u',
    };
    const answer = await call(`${fixture.url}/v1/embeddings`, body, { token });
    assert.equal(answer.status, 200, answer.text);
    assert.deepEqual(fixture.upstreamCalls.at(-1)?.body, body);
    const data = object(answer.json).data as { embedding: number[] }[];
    assert.equal(data[0]?.embedding.length, 16);
    assert.equal(fixture.records().at(-1)?.vectors?.dimensions, 16);
  });
});
