import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { vectorsDigest } from '@veil/core';
import { cohereV2EmbedRequest } from '../../src/dialects/cohere.ts';
import { cohere } from '../../src/dialects/index.ts';
import { assertDialectError, float32Base64, issueCount, jsonList, mebibyteList } from './expect.ts';

const v2 = '/v2/embed';
const v1 = '/v1/embed';
const encodings = ['float', 'int8', 'uint8', 'binary', 'ubinary', 'base64'];
const v2Body = { model: 'embed-v4.0', texts: ['a', 'b'], input_type: 'search_document' };

describe('cohere parse', () => {
  it('reads a v2 request with its options', () => {
    const parsed = cohere.parse(
      { ...v2Body, embedding_types: ['float', 'int8'], truncate: 'END', output_dimension: 512 },
      v2,
    );
    assert.deepEqual(parsed, {
      model: 'embed-v4.0',
      texts: ['a', 'b'],
      tokenInputs: null,
      inputCount: 2,
      dimensions: 512,
      encodings: ['float', 'int8'],
      textsAt: { field: 'texts', single: false },
    });
  });

  it('reads a v1 request, where model and input_type are optional', () => {
    assert.deepEqual(cohere.parse({ texts: ['a'] }, v1), {
      model: '',
      texts: ['a'],
      tokenInputs: null,
      inputCount: 1,
      textsAt: { field: 'texts', single: false },
    });
    assert.equal(cohere.parse({ texts: ['a'], model: 'embed-english-v3.0' }, v1).model, 'embed-english-v3.0');
  });

  it('refuses images, which cannot be masked', () => {
    assertDialectError(
      () => cohere.parse({ model: 'm', input_type: 'image', images: ['data:image/png;base64,AAAA'] }, v2),
      400,
      /^'images' is not supported by Veil: images cannot be masked/,
    );
    assertDialectError(
      () => cohere.parse({ model: 'm', input_type: 'search_query', inputs: [{ content: [] }] }, v2),
      400,
      /^'inputs' is not supported by Veil/,
    );
    assertDialectError(() => cohere.parse({ images: ['x'] }, v1), 400, /^'images' is not supported by Veil/);
  });

  it('names the field at fault', () => {
    const { model: _, ...noModel } = v2Body;
    assertDialectError(() => cohere.parse(noModel, v2), 400, /^'model' is required$/);
    const { input_type: __, ...noType } = v2Body;
    assertDialectError(() => cohere.parse(noType, v2), 400, /^'input_type' is required$/);
    assertDialectError(
      () => cohere.parse({ ...v2Body, texts: 'a' }, v2),
      400,
      /^'texts' must be an array of strings$/,
    );
    assertDialectError(
      () => cohere.parse({ ...v2Body, texts: [] }, v2),
      400,
      /^'texts' must not be an empty array$/,
    );
    assertDialectError(
      () => cohere.parse({ ...v2Body, texts: ['a', 2] }, v2),
      400,
      /^'texts\[1\]' must be a string$/,
    );
    assertDialectError(
      () => cohere.parse({ ...v2Body, input_type: 'poetry' }, v2),
      400,
      /^'input_type' must be one of 'search_document', 'search_query'/,
    );
    assertDialectError(
      () => cohere.parse({ ...v2Body, embedding_types: ['float', 'fp16'] }, v2),
      400,
      /^'embedding_types\[1\]' must be one of 'float', 'int8'/,
    );
    assertDialectError(() => cohere.parse({ ...v2Body, truncate: 'MIDDLE' }, v2), 400, /^'truncate' must be/);
  });
});

describe('cohere parse of a long list', () => {
  const parse = (extra: object) => () => cohere.parse({ ...v2Body, ...extra }, v2);

  it('refuses 1 MiB of bad embedding types as too many types, with one issue', () => {
    const types = mebibyteList('"fp16"');
    assertDialectError(
      parse({ embedding_types: types }),
      400,
      /^'embedding_types' must hold at most 6 types$/,
    );
    assert.equal(issueCount(cohereV2EmbedRequest, { ...v2Body, embedding_types: types }), 1);
    assert.deepEqual(cohere.parse({ ...v2Body, embedding_types: [...encodings] }, v2).encodings, encodings);
  });

  it('refuses more texts than any policy allows before reading them', () => {
    const texts = mebibyteList('1');
    assertDialectError(parse({ texts }), 400, new RegExp(`^'texts' holds ${texts.length} inputs, more than`));
    assert.equal(issueCount(cohereV2EmbedRequest, { ...v2Body, texts }), 1);
  });

  it('names only the first item that is not a string', () => {
    const texts = jsonList(100_000, '1');
    assertDialectError(parse({ texts }), 400, /^'texts\[0\]' must be a string$/);
    assert.equal(issueCount(cohereV2EmbedRequest, { ...v2Body, texts }), 1);
  });
});

describe('cohere model names', () => {
  it('are refused past 256 characters, before they reach rules and records', () => {
    assert.equal(cohere.parse({ ...v2Body, model: 'm'.repeat(256) }, v2).model.length, 256);
    assertDialectError(
      () => cohere.parse({ ...v2Body, model: 'm'.repeat(257) }, v2),
      400,
      /^'model' must be at most 256 characters$/,
    );
    assertDialectError(
      () => cohere.parse({ texts: ['a'], model: 'm'.repeat(257) }, v1),
      400,
      /^'model' must be at most 256 characters$/,
    );
  });
});

describe('cohere withTexts', () => {
  it('replaces texts and keeps every other field', () => {
    const body = { ...v2Body, embedding_types: ['float'] };
    assert.deepEqual(cohere.withTexts(body, v2, ['x', 'y']), { ...body, texts: ['x', 'y'] });
    assert.deepEqual(cohere.withTexts({ texts: ['a'], truncate: 'NONE' }, v1, ['x']), {
      texts: ['x'],
      truncate: 'NONE',
    });
  });

  it('refuses a different number of texts', () => {
    assertDialectError(() => cohere.withTexts(v2Body, v2, ['x']), 500, /cannot replace/);
  });
});

describe('cohere errorBody', () => {
  it('carries message, which the Cohere SDK reads', () => {
    assert.deepEqual(cohere.errorBody(429, 'rate_limited', 'slow down'), { message: 'slow down' });
  });
});

describe('cohere vectors', () => {
  const floats = [
    [0.5, -0.5, 0.25, 0, 0.125, -1, 1, 0.75],
    [0, 0, 0, 0, 0, 0, 0, 1],
  ];

  it('counts v2 embeddings by type and digests the floats', () => {
    const response = {
      id: 'x',
      embeddings: {
        float: floats,
        int8: floats.map((v) => v.map((x) => Math.round(x * 127))),
        ubinary: [[0b10101110], [0b00000001]],
        binary: [[46], [-127]],
        base64: floats.map(float32Base64),
      },
      texts: ['a', 'b'],
      meta: { api_version: { version: '2' } },
      response_type: 'embeddings_by_type',
    };
    assert.deepEqual(cohere.vectors(response, v2), {
      count: 2,
      dimensions: 8,
      digest: vectorsDigest(floats),
    });
  });

  it('digests base64 as its floats when no float type is present', () => {
    const response = { id: 'x', embeddings: { base64: floats.map(float32Base64) } };
    assert.equal(cohere.vectors(response, v2).digest, vectorsDigest(floats));
  });

  it('counts packed bits as eight dimensions a byte', () => {
    const response = { id: 'x', embeddings: { ubinary: [[255, 0, 1]] } };
    assert.deepEqual(cohere.vectors(response, v2), {
      count: 1,
      dimensions: 24,
      digest: vectorsDigest([[255, 0, 1]]),
    });
  });

  it('counts a v1 float matrix', () => {
    const response = { id: 'x', embeddings: floats, texts: ['a', 'b'], response_type: 'embeddings_floats' };
    assert.deepEqual(cohere.vectors(response, v1), {
      count: 2,
      dimensions: 8,
      digest: vectorsDigest(floats),
    });
  });

  it('rejects a malformed response with 502', () => {
    assertDialectError(() => cohere.vectors({ id: 'x' }, v2), 502, /'embeddings' is not an object/);
    assertDialectError(() => cohere.vectors({ embeddings: {} }, v2), 502, /holds no known embedding type/);
    assertDialectError(
      () => cohere.vectors({ embeddings: { float: floats, int8: [[1, 2]] } }, v2),
      502,
      /'embeddings.int8' disagrees/,
    );
    assertDialectError(
      () => cohere.vectors({ embeddings: { base64: ['###='] } }, v2),
      502,
      /'embeddings.base64\[0\]'/,
    );
    assertDialectError(
      () => cohere.vectors({ embeddings: [[1], [1, 2]] }, v1),
      502,
      /'embeddings\[1\]' has 2/,
    );
  });
});
