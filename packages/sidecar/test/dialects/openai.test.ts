import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { vectorsDigest } from '@veil/core';
import { openai } from '../../src/dialects/index.ts';
import { openAIEmbedRequest } from '../../src/dialects/openai.ts';
import { assertDialectError, float32Base64, issueCount, jsonList, mebibyteList } from './expect.ts';
import { parseInSmallHeap } from './small-heap.ts';

const path = '/v1/embeddings';

describe('openai parse', () => {
  it('reads a single string input', () => {
    assert.deepEqual(openai.parse({ model: 'text-embedding-3-small', input: 'hello' }, path), {
      model: 'text-embedding-3-small',
      texts: ['hello'],
      tokenInputs: null,
      inputCount: 1,
      textsAt: { field: 'input', single: true },
    });
  });

  it('reads an array of strings, with dimensions and encoding', () => {
    const parsed = openai.parse(
      { model: 'm', input: ['a', 'b'], dimensions: 256, encoding_format: 'base64', user: 'u-1' },
      '/embeddings',
    );
    assert.deepEqual(parsed.texts, ['a', 'b']);
    assert.equal(parsed.inputCount, 2);
    assert.equal(parsed.dimensions, 256);
    assert.deepEqual(parsed.encodings, ['base64']);
    assert.deepEqual(parsed.textsAt, { field: 'input', single: false });
  });

  it('reads one token array and an array of token arrays', () => {
    const one = openai.parse({ model: 'm', input: [1, 2, 3] }, path);
    assert.deepEqual(one.tokenInputs, [[1, 2, 3]]);
    assert.deepEqual(one.texts, []);
    assert.equal(one.inputCount, 1);
    assert.equal(one.textsAt, null);
    const many = openai.parse({ model: 'm', input: [[1, 2], [3]] }, path);
    assert.deepEqual(many.tokenInputs, [[1, 2], [3]]);
    assert.equal(many.inputCount, 2);
  });

  it('takes null for optional fields, as SDKs send for unset options', () => {
    const parsed = openai.parse({ model: 'm', input: 'x', dimensions: null, encoding_format: null }, path);
    assert.equal(parsed.dimensions, undefined);
    assert.equal(parsed.encodings, undefined);
  });

  it('names the field at fault', () => {
    const missing = assertDialectError(
      () => openai.parse({ input: 'x' }, path),
      400,
      /^'model' is required$/,
    );
    assert.equal(missing.param, 'model');
    assert.equal(missing.code, 'invalid_request');
    assertDialectError(() => openai.parse({ model: 3, input: 'x' }, path), 400, /^'model' must be a string$/);
    assertDialectError(() => openai.parse({ model: 'm' }, path), 400, /^'input' is required$/);
    assertDialectError(() => openai.parse('nope', path), 400, /^request body must be a JSON object$/);
  });

  it('rejects empty inputs as OpenAI does', () => {
    const body = (input: unknown) => () => openai.parse({ model: 'm', input }, path);
    assertDialectError(body(''), 400, /^'input' must not be an empty string$/);
    assertDialectError(body([]), 400, /^'input' must not be an empty array$/);
    const item = assertDialectError(body(['a', '']), 400, /^'input\[1\]' must not be an empty string$/);
    assert.equal(item.param, 'input[1]');
    assertDialectError(body([[1], []]), 400, /^'input\[1\]' must not be an empty token array$/);
  });

  it('rejects inputs of the wrong type with the accepted shapes', () => {
    const body = (input: unknown) => () => openai.parse({ model: 'm', input }, path);
    assertDialectError(body(5), 400, /^'input' must be a string, an array of strings, an array of token ids/);
    assertDialectError(body(['a', 2]), 400, /^'input' must be a string, an array of strings/);
    assertDialectError(body([1, -2]), 400, /^'input\[1\]' must be a non-negative token id$/);
  });

  it('rejects bad options', () => {
    const body = (extra: object) => () => openai.parse({ model: 'm', input: 'x', ...extra }, path);
    assertDialectError(
      body({ encoding_format: 'int8' }),
      400,
      /^'encoding_format' must be 'float' or 'base64'$/,
    );
    assertDialectError(body({ dimensions: 0 }), 400, /^'dimensions' must be a positive integer$/);
    assertDialectError(body({ dimensions: 1.5 }), 400, /^'dimensions' must be a positive integer$/);
    assertDialectError(body({ user: 7 }), 400, /^'user' must be a string$/);
  });
});

describe('openai parse of a 1 MiB list', () => {
  const body = (input: unknown) => ({ model: 'm', input });
  const parse = (input: unknown) => () => openai.parse(body(input), path);

  it('reads half a million token ids as one input, in half the heap the sidecar has', async () => {
    const tokens = mebibyteList('0');
    const parsed = openai.parse(body(tokens), path);
    assert.equal(parsed.inputCount, 1);
    assert.equal(parsed.tokenInputs?.[0]?.length, tokens.length);
    const json = JSON.stringify(body(tokens));
    assert.deepEqual(await parseInSmallHeap({ api: 'openai', path, body: json }), { inputCount: 1 });
  });

  it('names only the bad token id at the end, with one issue', () => {
    const tokens = mebibyteList('0', '-1');
    const last = tokens.length - 1;
    assertDialectError(
      parse(tokens),
      400,
      new RegExp(`^'input\\[${last}\\]' must be a non-negative token id$`),
    );
    assert.equal(issueCount(openAIEmbedRequest, body(tokens)), 1);
  });

  it('refuses more token arrays than any policy allows before reading them', () => {
    const inputs = mebibyteList('[0]');
    assertDialectError(
      parse(inputs),
      400,
      new RegExp(`^'input' holds ${inputs.length} inputs, more than the 100000 any policy allows$`),
    );
    assert.equal(issueCount(openAIEmbedRequest, body(inputs)), 1);
  });

  it('refuses a list of objects by its first item, with one issue', () => {
    const objects = mebibyteList('{}');
    assertDialectError(
      parse(objects),
      400,
      /^'input' must be a string, an array of strings, an array of token ids or an array of token-id arrays$/,
    );
    assert.equal(issueCount(openAIEmbedRequest, body(objects)), 1);
  });

  it('names the one item whose kind differs from the first, with one issue', () => {
    const mixed = jsonList(100_000, '"a"', '1');
    const error = assertDialectError(parse(mixed), 400, /: 'input\[99999\]' is not a string$/);
    assert.equal(error.param, 'input');
    assert.equal(issueCount(openAIEmbedRequest, body(mixed)), 1);
    assert.equal(issueCount(openAIEmbedRequest, body(jsonList(100_000, '[0]', '[0, -1]'))), 1);
    assertDialectError(
      parse(jsonList(3, '[1]', '[1, "2"]')),
      400,
      /^'input\[2\]\[1\]' must be an integer token id$/,
    );
    assertDialectError(parse([1, 'a']), 400, /: 'input\[1\]' is not a token id$/);
    assertDialectError(parse([[1], 2]), 400, /: 'input\[1\]' is not a token-id array$/);
  });
});

describe('openai model names', () => {
  it('are refused past 256 characters, before they reach rules and records', () => {
    assert.equal(openai.parse({ model: 'm'.repeat(256), input: 'x' }, path).model.length, 256);
    const error = assertDialectError(
      () => openai.parse({ model: 'm'.repeat(257), input: 'x' }, path),
      400,
      /^'model' must be at most 256 characters$/,
    );
    assert.equal(error.param, 'model');
  });
});

describe('openai withTexts', () => {
  it('keeps a string a string and every other field', () => {
    const body = {
      model: 'm',
      input: 'mail bob@example.com',
      dimensions: 64,
      user: 'u',
      encoding_format: null,
    };
    const rewritten = openai.withTexts(body, path, ['mail [EMAIL]']);
    assert.deepEqual(rewritten, {
      model: 'm',
      input: 'mail [EMAIL]',
      dimensions: 64,
      user: 'u',
      encoding_format: null,
    });
    assert.equal(body.input, 'mail bob@example.com', 'the original body is left alone');
  });

  it('keeps an array an array, in order', () => {
    const rewritten = openai.withTexts({ model: 'm', input: ['a', 'b'], encoding_format: 'float' }, path, [
      'x',
      'y',
    ]);
    assert.deepEqual(rewritten, { model: 'm', input: ['x', 'y'], encoding_format: 'float' });
  });

  it('leaves token inputs as they are', () => {
    const body = { model: 'm', input: [[1, 2]] };
    assert.deepEqual(openai.withTexts(body, path, []), body);
    assertDialectError(() => openai.withTexts(body, path, ['x']), 500, /1 texts cannot replace the 0/);
  });

  it('refuses a different number of texts', () => {
    assertDialectError(
      () => openai.withTexts({ model: 'm', input: ['a', 'b'] }, path, ['x']),
      500,
      /cannot replace/,
    );
  });

  it('validates the body it rewrites', () => {
    assertDialectError(() => openai.withTexts({ model: 'm', input: 3 }, path, ['x']), 400, /'input'/);
  });
});

describe('openai errorBody', () => {
  it("has OpenAI's shape, so the SDK maps it to its error classes", () => {
    assert.deepEqual(openai.errorBody(400, 'invalid_request', "'input' is required", 'input'), {
      error: {
        message: "'input' is required",
        type: 'invalid_request_error',
        param: 'input',
        code: 'invalid_request',
      },
    });
    assert.deepEqual(openai.errorBody(401, 'unauthenticated', 'no token'), {
      error: { message: 'no token', type: 'authentication_error', param: null, code: 'unauthenticated' },
    });
  });

  it('types each error code', () => {
    const type = (code: Parameters<typeof openai.errorBody>[1]) =>
      (openai.errorBody(500, code, 'm') as { error: { type: string } }).error.type;
    assert.equal(type('forbidden'), 'permission_error');
    assert.equal(type('rate_limited'), 'rate_limit_error');
    assert.equal(type('too_large'), 'invalid_request_error');
    assert.equal(type('upstream_timeout'), 'server_error');
    assert.equal(type('unavailable'), 'server_error');
  });
});

describe('openai vectors', () => {
  const floats = [
    [0.5, -0.25, 0],
    [1, 0.125, -1],
  ];
  const response = (embeddings: unknown[]) => ({
    object: 'list',
    data: embeddings.map((embedding, index) => ({ object: 'embedding', index, embedding })),
    model: 'm',
    usage: { prompt_tokens: 2, total_tokens: 2 },
  });

  it('counts float vectors and digests them', () => {
    assert.deepEqual(openai.vectors(response(floats), path), {
      count: 2,
      dimensions: 3,
      digest: vectorsDigest(floats),
    });
  });

  it('decodes base64 vectors to the same summary', () => {
    const summary = openai.vectors(response(floats.map(float32Base64)), path);
    assert.deepEqual(summary, { count: 2, dimensions: 3, digest: vectorsDigest(floats) });
  });

  it('answers an empty list with no vectors', () => {
    assert.equal(openai.vectors(response([]), path).count, 0);
  });

  it('rejects a malformed response with 502', () => {
    assertDialectError(() => openai.vectors({ object: 'list' }, path), 502, /'data' is not an array/);
    assertDialectError(() => openai.vectors([], path), 502, /the body is not an object/);
    assertDialectError(
      () => openai.vectors(response([[1, 2], [1]]), path),
      502,
      /'data\[1\]' has 1 dimensions/,
    );
    assertDialectError(
      () => openai.vectors(response([['1', 2]]), path),
      502,
      /'data\[0\]' is not an embedding/,
    );
    assertDialectError(() => openai.vectors(response([[]]), path), 502, /'data\[0\]' is not an embedding/);
    assertDialectError(() => openai.vectors(response(['AAA']), path), 502, /'data\[0\]' is not an embedding/);
    assertDialectError(() => openai.vectors({ data: [null] }, path), 502, /'data\[0\]' is not an embedding/);
  });
});
