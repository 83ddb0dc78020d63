// Every dialect's schema lists the top-level fields Veil checks: a body with any other field,
// or a field named outside ASCII, is refused, naming it, and never forwarded unchecked.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cohere, type Dialect, ollama, openai, tei } from '../../src/dialects/index.ts';
import { assertDialectError } from './expect.ts';

interface Route {
  readonly dialect: Dialect;
  readonly path: string;
  /** A body with every field the route takes, each set. */
  readonly full: Record<string, unknown>;
  /** The field holding the texts, and the texts `full` carries there. */
  readonly field: string;
  readonly texts: readonly string[];
  /** Fields of the same API, or of servers speaking it, that Veil does not check. */
  readonly foreign: readonly string[];
}

const routes: readonly Route[] = [
  {
    dialect: openai,
    path: '/v1/embeddings',
    full: {
      model: 'm',
      input: ['a', 'b'],
      encoding_format: 'base64',
      dimensions: 64,
      user: 'u-1',
      input_type: 'query',
      truncate: 'START',
      truncate_prompt_tokens: 512,
    },
    field: 'input',
    texts: ['a', 'b'],
    // vLLM's: chat messages to embed, the vectors' dtype and byte order, token handling, scheduling.
    foreign: ['messages', 'embed_dtype', 'endianness', 'add_special_tokens', 'priority'],
  },
  {
    dialect: openai,
    path: '/embeddings',
    full: { model: 'm', input: 'a', encoding_format: 'float', dimensions: 64, user: 'u-1' },
    field: 'input',
    texts: ['a'],
    foreign: ['messages', 'prompt', 'inputs'],
  },
  {
    dialect: tei,
    path: '/embed',
    full: {
      inputs: ['a', 'b'],
      normalize: true,
      truncate: true,
      truncation_direction: 'Left',
      prompt_name: 'query',
      dimensions: 64,
    },
    field: 'inputs',
    texts: ['a', 'b'],
    foreign: ['input', 'model', 'texts'],
  },
  {
    dialect: ollama,
    path: '/api/embed',
    full: {
      model: 'nomic-embed-text',
      input: ['a', 'b'],
      truncate: false,
      options: { num_ctx: 2048, seed: 1 },
      keep_alive: '5m',
      dimensions: 64,
    },
    field: 'input',
    texts: ['a', 'b'],
    foreign: ['prompt', 'images', 'format', 'raw'],
  },
  {
    dialect: ollama,
    path: '/api/embeddings',
    full: { model: 'nomic-embed-text', prompt: 'a', options: { seed: 1 }, keep_alive: 30 },
    field: 'prompt',
    texts: ['a'],
    // /api/embed's fields are not this route's.
    foreign: ['input', 'truncate', 'dimensions'],
  },
  {
    dialect: cohere,
    path: '/v2/embed',
    full: {
      model: 'embed-v4.0',
      texts: ['a', 'b'],
      input_type: 'search_document',
      embedding_types: ['float', 'int8', 'base64'],
      truncate: 'END',
      output_dimension: 256,
      max_tokens: 512,
    },
    field: 'texts',
    texts: ['a', 'b'],
    foreign: ['text', 'documents', 'request_options'],
  },
  {
    dialect: cohere,
    path: '/v1/embed',
    full: {
      model: 'embed-english-v3.0',
      texts: ['a'],
      input_type: 'search_query',
      embedding_types: ['float'],
      truncate: 'NONE',
    },
    field: 'texts',
    texts: ['a'],
    // v2's fields are not v1's: `inputs` would carry content Veil never read.
    foreign: ['inputs', 'output_dimension', 'max_tokens'],
  },
];

describe('top-level fields', () => {
  for (const route of routes) {
    describe(`${route.dialect.name} ${route.path}`, () => {
      it('takes every option the API documents, and forwards them as sent', () => {
        const parsed = route.dialect.parse(route.full, route.path);
        assert.deepEqual(parsed.texts, route.texts);
        const masked = route.texts.map((text) => `[${text}]`);
        const slot = Array.isArray(route.full[route.field]) ? masked : masked[0];
        assert.deepEqual(route.dialect.withTexts(route.full, route.path, masked), {
          ...route.full,
          [route.field]: slot,
        });
      });

      it('refuses any other field, naming it', () => {
        for (const name of route.foreign) {
          const body = { ...route.full, [name]: 'SSN 123-45-6789' };
          const error = assertDialectError(
            () => route.dialect.parse(body, route.path),
            400,
            new RegExp(`^field "${name}" is not one Veil can check; remove it$`),
          );
          assert.equal(error.param, name);
          assert.equal(error.code, 'invalid_request');
          // Masking rewrites a body only after reading it: the field is never carried along.
          assertDialectError(
            () => route.dialect.withTexts(body, route.path, [...route.texts]),
            400,
            new RegExp(`^field "${name}"`),
          );
        }
      });

      it('refuses a field named outside ASCII, as a case-folding decoder may read it as a known one', () => {
        for (const known of Object.keys(route.full)) {
          const folded = known.includes('s') ? known.replace('s', 'ſ') : `${known}\u212a`;
          const error = assertDialectError(
            () => route.dialect.parse({ ...route.full, [folded]: 'x' }, route.path),
            400,
            /^field ".*" is not one Veil can check: its name holds U\+(017F|212A), which is not ASCII; remove it$/,
          );
          assert.equal(error.param, folded);
        }
      });

      it('still refuses a field named like a known one in other case', () => {
        const [known = ''] = Object.keys(route.full);
        assertDialectError(
          () => route.dialect.parse({ ...route.full, [known.toUpperCase()]: 'x' }, route.path),
          400,
          new RegExp(`^'${known.toUpperCase()}' is not '${known}': field names are matched exactly$`),
        );
      });
    });
  }
});

describe('refusing fields', () => {
  it('refuses the vLLM chat body sent to /v1/embeddings, whose messages vLLM embeds', () => {
    const body = {
      model: 'm',
      input: 'ok',
      messages: [{ role: 'user', content: 'SSN 123-45-6789' }],
      add_generation_prompt: false,
    };
    assertDialectError(
      () => openai.parse(body, '/v1/embeddings'),
      400,
      /^field "messages" is not one Veil can check; remove it$/,
    );
  });

  it('refuses a model named outside printable ASCII, which Ollama would fold into another', () => {
    assertDialectError(
      () => openai.parse({ model: 'ſecret-embed', input: 'ok' }, '/v1/embeddings'),
      400,
      /model.*must be printable ASCII/,
    );
    assertDialectError(
      () => ollama.parse({ model: 'ſecret-embed', input: 'ok' }, '/api/embed'),
      400,
      /model.*must be printable ASCII/,
    );
  });

  it('takes the text-free options of OpenAI-compatible servers and LangChain’s TEI parameters', () => {
    const nim = {
      model: 'm',
      input: 'ok',
      input_type: 'passage',
      truncate: 'END',
      truncate_prompt_tokens: -1,
    };
    assert.equal(openai.parse(nim, '/v1/embeddings').inputCount, 1);
    const langchain = { inputs: ['ok'], parameters: { truncate: true } };
    assert.equal(tei.parse(langchain, '/embed').inputCount, 1);
    assertDialectError(
      () => tei.parse({ inputs: ['ok'], parameters: { text: 'SSN 123-45-6789' } }, '/embed'),
      400,
      /parameters/,
    );
    assertDialectError(
      () => openai.parse({ ...nim, input_type: 'SSN 123-45-6789' }, '/v1/embeddings'),
      400,
      /input_type/,
    );
  });

  it("refuses Go's folds of known names: dimenſions and textſ, the Kelvin sign for k", () => {
    assertDialectError(
      () => openai.parse({ model: 'm', input: 'x', dimenſions: 4096 }, '/v1/embeddings'),
      400,
      /^field "dimenſions" is not one Veil can check: its name holds U\+017F/,
    );
    assertDialectError(
      () => cohere.parse({ texts: ['a'], textſ: ['SSN 123-45-6789'] }, '/v1/embed'),
      400,
      /^field "textſ" is not one Veil can check: its name holds U\+017F/,
    );
    assertDialectError(
      () => ollama.parse({ model: 'm', input: 'x', \u212aeep_alive: 1 }, '/api/embed'),
      400,
      /is not one Veil can check: its name holds U\+212A/,
    );
    assertDialectError(
      () => tei.parse({ inputs: 'x', ünknown: 1 }, '/embed'),
      400,
      /its name holds U\+00FC, which is not ASCII/,
    );
    assertDialectError(
      () => tei.parse({ inputs: 'x', '\u{1F600}': 1 }, '/embed'),
      400,
      /its name holds U\+1F600, which is not ASCII/,
    );
  });

  it('names an unknown field before any other problem of the body', () => {
    assertDialectError(
      () => openai.parse({ input: 3, stream: true }, '/v1/embeddings'),
      400,
      /^field "stream" is not one Veil can check; remove it$/,
    );
  });

  it('refuses inherited-looking names as any other: __proto__ and constructor are fields too', () => {
    for (const name of ['__proto__', 'constructor', 'toString']) {
      const body = JSON.parse(`{"model":"m","input":"x","${name}":{"input":"SSN 123-45-6789"}}`);
      assertDialectError(
        () => openai.parse(body, '/v1/embeddings'),
        400,
        new RegExp(`^field "${name}" is not one Veil can check; remove it$`),
      );
    }
  });

  it('shows a field name escaped, and a long one cut short, as it goes into the record', () => {
    const quoted = assertDialectError(
      () => tei.parse({ inputs: 'x', 'a"b\n': 1 }, '/embed'),
      400,
      /^field "a\\"b\\n" is not one Veil can check; remove it$/,
    );
    assert.equal(quoted.param, 'a"b\n');
    const long = 'k'.repeat(10_000);
    const cut = assertDialectError(
      () => tei.parse({ inputs: 'x', [long]: 1 }, '/embed'),
      400,
      /^field "k+…" /,
    );
    assert.equal(cut.param, `${'k'.repeat(64)}…`);
    assert.ok(cut.message.length < 200);
  });
});
