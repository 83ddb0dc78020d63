import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { vectorsDigest } from '@veil/core';
import { ollama } from '../../src/dialects/index.ts';
import { ollamaEmbedRequest } from '../../src/dialects/ollama.ts';
import { assertDialectError, issueCount, jsonList, mebibyteList } from './expect.ts';

const embed = '/api/embed';
const legacy = '/api/embeddings';

describe('ollama parse', () => {
  it('reads /api/embed with a string or an array', () => {
    assert.deepEqual(ollama.parse({ model: 'nomic-embed-text', input: 'hi' }, embed), {
      model: 'nomic-embed-text',
      texts: ['hi'],
      tokenInputs: null,
      inputCount: 1,
      textsAt: { field: 'input', single: true },
    });
    const parsed = ollama.parse(
      {
        model: 'm',
        input: ['a', 'b'],
        truncate: false,
        options: { num_ctx: 512 },
        keep_alive: '5m',
        dimensions: 256,
      },
      embed,
    );
    assert.deepEqual(parsed.texts, ['a', 'b']);
    assert.equal(parsed.dimensions, 256);
  });

  it('reads a request without input as no inputs, as Ollama loads the model for it', () => {
    const parsed = ollama.parse({ model: 'm', keep_alive: 0 }, embed);
    assert.deepEqual(parsed.texts, []);
    assert.equal(parsed.textsAt, null);
  });

  it('takes model options of numbers and switches, null where unset, as LangChain sends them', () => {
    const options = { num_ctx: 2048, temperature: 0.5, use_mmap: true, stop: null, tfs_z: null };
    assert.deepEqual(ollama.parse({ model: 'm', input: 'x', options, keep_alive: '1h30m' }, embed).texts, [
      'x',
    ]);
    assert.deepEqual(ollama.parse({ model: 'm', prompt: 'x', keep_alive: -1 }, legacy).texts, ['x']);
    // Every form Go's time.ParseDuration takes.
    for (const keep_alive of ['0', '-0', '+5m', '.5h', '5.m', '1.5h30m', '300ms', '-1s', '2µs']) {
      assert.deepEqual(ollama.parse({ model: 'm', input: 'x', keep_alive }, embed).texts, ['x'], keep_alive);
    }
  });

  it('refuses text in the options and keep_alive, which would reach the model server unmasked', () => {
    const refused: [Record<string, unknown>, RegExp][] = [
      [{ options: { stop: ['ssn 123-45-6789'] } }, /^'options' must hold numbers, booleans or null only/],
      [{ options: { seed: 'bob@example.com' } }, /^'options' must hold numbers, booleans or null only/],
      [{ options: { seed: { deep: [1] } } }, /^'options' must hold numbers, booleans or null only/],
      [{ options: { 'bob@example.com': 1 } }, /^'options' must name its options in lower-case letters/],
      [{ keep_alive: 'bob@example.com' }, /^'keep_alive' must be a duration \('5m', '1h30m'\) or a number/],
      [{ keep_alive: '5 minutes' }, /^'keep_alive' must be a duration/],
      [{ keep_alive: '5' }, /^'keep_alive' must be a duration/],
      [{ keep_alive: '.m' }, /^'keep_alive' must be a duration/],
    ];
    for (const [fields, message] of refused) {
      for (const [path, body] of [
        [embed, { model: 'm', input: 'x', ...fields }],
        [legacy, { model: 'm', prompt: 'x', ...fields }],
      ] as const) {
        const error = assertDialectError(() => ollama.parse(body, path), 400, message);
        assert.ok(!error.message.includes('bob@'), 'the message does not quote the caller');
      }
    }
  });

  it('reads the legacy /api/embeddings prompt', () => {
    assert.deepEqual(ollama.parse({ model: 'm', prompt: 'hello', options: {} }, legacy), {
      model: 'm',
      texts: ['hello'],
      tokenInputs: null,
      inputCount: 1,
      textsAt: { field: 'prompt', single: true },
    });
  });

  it('names the field at fault', () => {
    assertDialectError(() => ollama.parse({ input: 'x' }, embed), 400, /^'model' is required$/);
    assertDialectError(
      () => ollama.parse({ model: 'm', input: 4 }, embed),
      400,
      /^'input' must be a string or an array/,
    );
    assertDialectError(
      () => ollama.parse({ model: 'm', input: ['a', 1] }, embed),
      400,
      /^'input' must be a string or/,
    );
    assertDialectError(
      () => ollama.parse({ model: 'm', input: 'x', options: 3 }, embed),
      400,
      /^'options' must be an object$/,
    );
    assertDialectError(
      () => ollama.parse({ model: 'm', input: 'x', keep_alive: [] }, embed),
      400,
      /^'keep_alive' must be a duration/,
    );
    assertDialectError(
      () => ollama.parse({ model: 'm', input: 'x', truncate: 1 }, embed),
      400,
      /^'truncate' must be a boolean$/,
    );
    assertDialectError(() => ollama.parse({ model: 'm' }, legacy), 400, /^'prompt' is required$/);
    assertDialectError(
      () => ollama.parse({ model: 'm', prompt: ['a'] }, legacy),
      400,
      /^'prompt' must be a string$/,
    );
  });
});

describe('ollama parse of a long list', () => {
  const body = (input: unknown) => ({ model: 'm', input });
  const parse = (input: unknown) => () => ollama.parse(body(input), embed);

  it('refuses 1 MiB of numbers by the first, with one issue', () => {
    const numbers = mebibyteList('1');
    assertDialectError(parse(numbers), 400, /^'input' must be a string or an array of strings$/);
    assert.equal(issueCount(ollamaEmbedRequest, body(numbers)), 1);
  });

  it('refuses more texts than any policy allows before reading them', () => {
    const mixed = ['a', ...mebibyteList('1')];
    assertDialectError(parse(mixed), 400, new RegExp(`^'input' holds ${mixed.length} inputs, more than`));
    assert.equal(issueCount(ollamaEmbedRequest, body(mixed)), 1);
  });

  it('names the one item that is not a string', () => {
    assertDialectError(
      parse(jsonList(100_000, '"a"', '1')),
      400,
      /^'input' must be a string or an array of strings: 'input\[99999\]' is not a string$/,
    );
    assert.equal(issueCount(ollamaEmbedRequest, body(jsonList(100_000, '"a"', '1'))), 1);
  });
});

describe('ollama withTexts', () => {
  it('keeps the shape and every other field', () => {
    assert.deepEqual(ollama.withTexts({ model: 'm', input: 'a', keep_alive: '1m' }, embed, ['x']), {
      model: 'm',
      input: 'x',
      keep_alive: '1m',
    });
    assert.deepEqual(ollama.withTexts({ model: 'm', input: ['a', 'b'] }, embed, ['x', 'y']), {
      model: 'm',
      input: ['x', 'y'],
    });
    assert.deepEqual(ollama.withTexts({ model: 'm', prompt: 'a', options: { seed: 1 } }, legacy, ['x']), {
      model: 'm',
      prompt: 'x',
      options: { seed: 1 },
    });
  });

  it('leaves a request without input alone and refuses a different number of texts', () => {
    assert.deepEqual(ollama.withTexts({ model: 'm' }, embed, []), { model: 'm' });
    assertDialectError(
      () => ollama.withTexts({ model: 'm', input: ['a'] }, embed, []),
      500,
      /cannot replace/,
    );
  });
});

describe('ollama errorBody', () => {
  it('is a bare error string, as Ollama answers', () => {
    assert.deepEqual(ollama.errorBody(403, 'forbidden', 'not allowed'), { error: 'not allowed' });
  });
});

describe('ollama vectors', () => {
  it('counts /api/embed embeddings', () => {
    const embeddings = [
      [0.1, 0.2, 0.3],
      [0.4, 0.5, 0.6],
    ];
    const response = { model: 'm', embeddings, total_duration: 10, load_duration: 1, prompt_eval_count: 4 };
    assert.deepEqual(ollama.vectors(response, embed), {
      count: 2,
      dimensions: 3,
      digest: vectorsDigest(embeddings),
    });
  });

  it('counts the legacy single embedding, and an empty one as none', () => {
    assert.deepEqual(ollama.vectors({ embedding: [0.5, 0.5] }, legacy), {
      count: 1,
      dimensions: 2,
      digest: vectorsDigest([[0.5, 0.5]]),
    });
    assert.equal(ollama.vectors({ embedding: [] }, legacy).count, 0);
  });

  it('rejects a malformed response with 502', () => {
    assertDialectError(
      () => ollama.vectors({ embedding: [0.1] }, embed),
      502,
      /'embeddings' is not an array/,
    );
    assertDialectError(() => ollama.vectors({ embeddings: [[0.1], 'x'] }, embed), 502, /'embeddings\[1\]'/);
    assertDialectError(
      () => ollama.vectors({ embeddings: [[0.1]] }, legacy),
      502,
      /'embedding' is not an array/,
    );
    assertDialectError(() => ollama.vectors('ok', legacy), 502, /not an object/);
  });
});

describe('ollama model names', () => {
  it('are read in their shortest spelling, as Ollama resolves them, so rules hold every spelling', () => {
    for (const spelling of [
      'secret-ft',
      'secret-ft:latest',
      'library/secret-ft',
      'registry.ollama.ai/library/secret-ft:latest',
    ]) {
      assert.equal(ollama.parse({ model: spelling, input: 'hi' }, embed).model, 'secret-ft', spelling);
      assert.equal(ollama.parse({ model: spelling, prompt: 'hi' }, legacy).model, 'secret-ft');
    }
    assert.equal(ollama.parse({ model: 'team/secret-ft:v2', input: 'hi' }, embed).model, 'team/secret-ft:v2');
  });

  it('are refused past 256 characters, before they reach rules and records', () => {
    assert.equal(ollama.parse({ model: 'm'.repeat(256), input: 'hi' }, embed).model.length, 256);
    for (const [body, path] of [
      [{ model: 'm'.repeat(257), input: 'hi' }, embed],
      [{ model: 'm'.repeat(257), prompt: 'hi' }, legacy],
    ] as const) {
      assertDialectError(() => ollama.parse(body, path), 400, /^'model' must be at most 256 characters$/);
    }
  });
});
