import assert from 'node:assert/strict';
import { test } from 'node:test';
import { canonicalModelName, modelMatcher } from '../../src/policy/models.ts';

test('every spelling Ollama resolves to one model reads as the shortest', () => {
  for (const name of [
    'nomic-embed-text',
    'nomic-embed-text:latest',
    'library/nomic-embed-text',
    'registry.ollama.ai/library/nomic-embed-text:latest',
  ]) {
    assert.equal(canonicalModelName(name), 'nomic-embed-text', name);
  }
  assert.equal(canonicalModelName('jina/jina-embeddings-v2:v1'), 'jina/jina-embeddings-v2:v1');
  assert.equal(canonicalModelName('BAAI/bge-small-en-v1.5'), 'BAAI/bge-small-en-v1.5');
});

test('a pattern naming one model holds for its every spelling, written either way', () => {
  for (const pattern of ['secret-embed', 'secret-embed:latest', 'library/secret-embed']) {
    const matches = modelMatcher(pattern);
    assert.ok(matches('secret-embed'), pattern);
    assert.ok(matches('secret-embed:latest'), pattern);
    assert.ok(matches('registry.ollama.ai/library/secret-embed'), pattern);
    assert.ok(!matches('secret-embed:v2'), pattern);
    assert.ok(!matches('other/secret-embed'), pattern);
  }
});

test('a wildcard pattern is matched against both spellings of the name, and is not itself shortened', () => {
  const latest = modelMatcher('*:latest');
  assert.ok(latest('x:latest'), 'the name as sent');
  assert.ok(!latest('x'));
  const secret = modelMatcher('secret-*');
  assert.ok(secret('library/secret-embed:latest'), 'the shortest spelling');
  const library = modelMatcher('library/*');
  assert.ok(library('library/bge'));
  assert.ok(!library('jina/jina-embeddings'), 'library/* does not grow into *');
});
