import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { normalizeRoutePath, policySpecSchema, serverEmbeddingPaths, veilEmbeddingPaths } from '@veil/core';

type Method = 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH' | 'HEAD';

/** The issues a policy listing these routes gets, as `field path: message`. */
function issues(routes: { method: Method; path: string }[]): string[] {
  const result = policySpecSchema.safeParse({ access: { allowRoutes: routes } });
  return result.error?.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`) ?? [];
}

describe('access.allowRoutes', () => {
  it('refuses every embedding path Veil serves, whatever the method, naming the field', () => {
    for (const path of veilEmbeddingPaths) {
      for (const method of ['POST', 'GET', 'PUT'] as const) {
        const found = issues([
          { method: 'GET', path: '/v1/models' },
          { method, path },
        ]);
        assert.equal(found.length, 1, `${method} ${path}`);
        assert.match(found[0] ?? '', /^access\.allowRoutes\.1\.path: .*embedding route/, `${method} ${path}`);
      }
    }
  });

  it("refuses other servers' embedding and pooling routes (TEI, vLLM, llama.cpp)", () => {
    for (const path of ['/embed_all', '/embed_sparse', '/pooling', '/vertex', '/invocations', '/embedding']) {
      assert.ok(serverEmbeddingPaths.includes(path), path);
      assert.equal(issues([{ method: 'POST', path }]).length, 1, path);
    }
  });

  it('refuses an embedding path however it is spelled', () => {
    const spellings = [
      '/v1/embeddings/',
      '/V1/Embeddings',
      '/v1//embeddings',
      '//v1/embeddings',
      '/v1/embedding%73',
      '/v1%2Fembeddings',
      '/v1/%2565mbeddings',
      '/v1/./embeddings',
      '/x/../embed_all',
      '/v1/%2e%2e/pooling',
      '/api\\embed',
      '/embed_sparse///',
      '/embed?x=1',
    ];
    for (const path of spellings) {
      assert.equal(issues([{ method: 'POST', path }]).length, 1, path);
    }
  });

  it('refuses a body POSTed to the root, which TEI embeds, but lets its health check through', () => {
    assert.equal(issues([{ method: 'POST', path: '/' }]).length, 1);
    assert.equal(issues([{ method: 'PUT', path: '//' }]).length, 1);
    assert.deepEqual(issues([{ method: 'GET', path: '/' }]), []);
    assert.deepEqual(issues([{ method: 'HEAD', path: '/' }]), []);
  });

  it('keeps routes that return no vectors: models, tokenizers, rerankers, scorers, classifiers', () => {
    const routes = [
      '/v1/models',
      '/tokenize',
      '/decode',
      '/rerank',
      '/v1/rerank',
      '/score',
      '/classify',
      '/predict',
    ];
    assert.deepEqual(issues(routes.map((path) => ({ method: 'POST' as const, path }))), []);
    assert.deepEqual(issues([{ method: 'POST', path: '/v1/embeddings-info' }]), []);
  });
});

describe('normalizeRoutePath', () => {
  it('reads a path as a lenient server would', () => {
    assert.equal(normalizeRoutePath('/V1//Embeddings/'), '/v1/embeddings');
    assert.equal(normalizeRoutePath('/a/%2e%2E/b%2Fc'), '/b/c');
    assert.equal(normalizeRoutePath('/'), '/');
    assert.equal(normalizeRoutePath('/bad%zzescape'), '/bad%zzescape');
  });

  it('reads the valid escapes of a path that also holds a malformed one', () => {
    assert.equal(normalizeRoutePath('/%zz/..%2Fembed_all'), '/embed_all');
    assert.equal(normalizeRoutePath('/%C0/%2Fpooling'), '/%c0/pooling');
  });
});
