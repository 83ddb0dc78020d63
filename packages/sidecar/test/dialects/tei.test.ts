import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { vectorsDigest } from '@veil/core';
import { tei } from '../../src/dialects/index.ts';
import { teiEmbedRequest } from '../../src/dialects/tei.ts';
import { assertDialectError, issueCount, jsonList, mebibyteList } from './expect.ts';

const path = '/embed';

describe('tei parse', () => {
  it('reads a string and an array of strings, with no model', () => {
    assert.deepEqual(tei.parse({ inputs: 'hello' }, path), {
      model: '',
      texts: ['hello'],
      tokenInputs: null,
      inputCount: 1,
      textsAt: { field: 'inputs', single: true },
    });
    const parsed = tei.parse(
      {
        inputs: ['a', 'b'],
        normalize: false,
        truncate: true,
        truncation_direction: 'Left',
        prompt_name: 'query',
        dimensions: 128,
      },
      path,
    );
    assert.deepEqual(parsed.texts, ['a', 'b']);
    assert.equal(parsed.inputCount, 2);
    assert.equal(parsed.dimensions, 128);
  });

  it('names the field at fault', () => {
    assertDialectError(() => tei.parse({}, path), 400, /^'inputs' is required$/);
    assertDialectError(
      () => tei.parse({ inputs: 3 }, path),
      400,
      /^'inputs' must be a string or an array of strings$/,
    );
    assertDialectError(() => tei.parse({ inputs: [] }, path), 400, /^'inputs' must not be an empty array$/);
    assertDialectError(
      () => tei.parse({ inputs: [[101, 102]] }, path),
      400,
      /^'inputs' must be a string or an array of strings$/,
    );
    assertDialectError(
      () => tei.parse({ inputs: 'a', normalize: 'yes' }, path),
      400,
      /^'normalize' must be a boolean$/,
    );
    assertDialectError(
      () => tei.parse({ inputs: 'a', truncation_direction: 'Up' }, path),
      400,
      /^'truncation_direction' must be 'Left' or 'Right'$/,
    );
    assertDialectError(() => tei.parse({ inputs: 'a', dimensions: -3 }, path), 400, /^'dimensions' must be/);
  });

  it('takes a prompt name, never free text that would reach TEI unmasked', () => {
    assert.deepEqual(tei.parse({ inputs: 'a', prompt_name: 's2p_query' }, path).texts, ['a']);
    for (const prompt_name of ['john@example.com', 'SSN 123-45-6789', '', 'x'.repeat(129)]) {
      assertDialectError(
        () => tei.parse({ inputs: 'a', prompt_name }, path),
        400,
        /^'prompt_name' must be the name of a configured prompt/,
      );
    }
  });
});

describe('tei parse of a long list', () => {
  const parse = (inputs: unknown) => () => tei.parse({ inputs }, path);

  it('refuses 1 MiB of token ids by the first, with one issue', () => {
    const tokens = mebibyteList('101');
    assertDialectError(parse(tokens), 400, /^'inputs' must be a string or an array of strings$/);
    assert.equal(issueCount(teiEmbedRequest, { inputs: tokens }), 1);
  });

  it('refuses more texts than any policy allows before reading them', () => {
    const texts = mebibyteList('"a"');
    assertDialectError(parse(texts), 400, new RegExp(`^'inputs' holds ${texts.length} inputs, more than`));
    assert.equal(issueCount(teiEmbedRequest, { inputs: texts }), 1);
  });

  it('names the one item that is not a string', () => {
    assertDialectError(
      parse(jsonList(100_000, '"a"', '1')),
      400,
      /^'inputs' must be a string or an array of strings: 'inputs\[99999\]' is not a string$/,
    );
    assert.equal(tei.parse({ inputs: jsonList(100_000, '"a"') }, path).inputCount, 100_000);
  });
});

describe('tei withTexts', () => {
  it('keeps the shape and every other field', () => {
    assert.deepEqual(tei.withTexts({ inputs: 'raw', normalize: true }, path, ['masked']), {
      inputs: 'masked',
      normalize: true,
    });
    assert.deepEqual(tei.withTexts({ inputs: ['a', 'b'], truncate: false }, path, ['x', 'y']), {
      inputs: ['x', 'y'],
      truncate: false,
    });
  });

  it('refuses a different number of texts', () => {
    assertDialectError(() => tei.withTexts({ inputs: 'a' }, path, ['x', 'y']), 500, /cannot replace/);
  });
});

describe('tei errorBody', () => {
  it("uses TEI's error and error_type", () => {
    assert.deepEqual(tei.errorBody(400, 'invalid_request', 'bad'), {
      error: 'bad',
      error_type: 'Validation',
    });
    assert.deepEqual(tei.errorBody(413, 'too_large', 'big'), { error: 'big', error_type: 'Validation' });
    assert.deepEqual(tei.errorBody(429, 'rate_limited', 'slow'), { error: 'slow', error_type: 'Overloaded' });
    assert.deepEqual(tei.errorBody(502, 'upstream_error', 'oops'), { error: 'oops', error_type: 'Backend' });
    assert.deepEqual(tei.errorBody(503, 'unavailable', 'down'), { error: 'down', error_type: 'Unhealthy' });
  });
});

describe('tei vectors', () => {
  it('counts a matrix of floats', () => {
    const matrix = [
      [0.1, 0.2],
      [0.3, 0.4],
      [0.5, 0.6],
    ];
    assert.deepEqual(tei.vectors(matrix, path), { count: 3, dimensions: 2, digest: vectorsDigest(matrix) });
  });

  it('rejects a malformed response with 502', () => {
    assertDialectError(() => tei.vectors({ embeddings: [] }, path), 502, /'the body' is not an array/);
    assertDialectError(() => tei.vectors([[0.1], [0.2, 0.3]], path), 502, /has 2 dimensions where 1/);
    assertDialectError(() => tei.vectors([0.1, 0.2], path), 502, /'the body\[0\]' is not an embedding/);
  });
});
