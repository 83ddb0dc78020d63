import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { allEmbeddingPaths, DialectError, dialectFor, errorCodeForStatus } from '../../src/dialects/index.ts';

describe('dialectFor', () => {
  it('picks the dialect by path in auto mode', () => {
    assert.equal(dialectFor('auto', '/v1/embeddings')?.name, 'openai');
    assert.equal(dialectFor('auto', '/embeddings')?.name, 'openai');
    assert.equal(dialectFor('auto', '/embed')?.name, 'tei');
    assert.equal(dialectFor('auto', '/api/embed')?.name, 'ollama');
    assert.equal(dialectFor('auto', '/api/embeddings')?.name, 'ollama');
    assert.equal(dialectFor('auto', '/v2/embed')?.name, 'cohere');
    assert.equal(dialectFor('auto', '/v1/embed')?.name, 'cohere');
  });

  it('serves only its own paths for a fixed API', () => {
    assert.equal(dialectFor('tei', '/embed')?.name, 'tei');
    assert.equal(dialectFor('tei', '/v1/embeddings'), undefined);
    assert.equal(dialectFor('openai', '/api/embed'), undefined);
  });

  it('ignores a query string and knows no other path', () => {
    assert.equal(dialectFor('auto', '/v1/embeddings?api-version=1')?.name, 'openai');
    assert.equal(dialectFor('auto', '/v1/chat/completions'), undefined);
    assert.equal(dialectFor('auto', '/v1/embeddings/'), undefined);
  });
});

describe('allEmbeddingPaths', () => {
  it('lists every path once', () => {
    assert.deepEqual([...allEmbeddingPaths].sort(), [
      '/api/embed',
      '/api/embeddings',
      '/embed',
      '/embeddings',
      '/v1/embed',
      '/v1/embeddings',
      '/v2/embed',
    ]);
  });
});

describe('DialectError', () => {
  it('derives its code from the status unless given one', () => {
    assert.equal(new DialectError(413, 'big').code, 'too_large');
    assert.equal(new DialectError(403, 'held', { code: 'approval_required' }).code, 'approval_required');
    assert.equal(errorCodeForStatus(504), 'upstream_timeout');
    assert.equal(errorCodeForStatus(418), 'internal');
  });
});
