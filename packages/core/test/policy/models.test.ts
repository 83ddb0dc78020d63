import assert from 'node:assert/strict';
import { test } from 'node:test';
import { canonicalModelName, modelMatcher } from '../../src/policy/models.ts';

const spellingsOfSecret = [
  'secret-embed',
  'Secret-Embed',
  'secret-embed:latest',
  'SECRET-EMBED:LATEST',
  'library/secret-embed',
  'library/secret-embed:LATEST',
  'registry.ollama.ai/library/secret-embed',
  'https://registry.ollama.ai/library/secret-embed:latest',
];

test('every spelling Ollama reads as one model has one shortest form, lower-cased', () => {
  for (const name of spellingsOfSecret) assert.equal(canonicalModelName(name), 'secret-embed', name);
  assert.equal(canonicalModelName('jina/jina-embeddings-v2:V1'), 'jina/jina-embeddings-v2:v1');
  assert.equal(canonicalModelName('BAAI/bge-small-en-v1.5'), 'baai/bge-small-en-v1.5');
  assert.equal(canonicalModelName('example.com/team/embed'), 'example.com/team/embed');
});

test('a name Ollama would refuse (an empty part) is kept as sent, never shortened to nothing', () => {
  for (const name of [':latest', 'library/', '/x', 'a//b']) assert.equal(canonicalModelName(name), name);
});

test('a pattern naming one model holds for its every spelling, written in any of them', () => {
  for (const pattern of ['secret-embed', 'Secret-Embed:latest', 'library/secret-embed']) {
    const matches = modelMatcher(pattern);
    for (const name of spellingsOfSecret) assert.ok(matches(name), `${pattern} / ${name}`);
    assert.ok(!matches('secret-embed:v2'), pattern);
    assert.ok(!matches('other/secret-embed'), pattern);
    assert.ok(!matches('example.com/library/secret-embed'), pattern);
  }
});

test('a wildcard pattern holds when any spelling of the name matches, ignoring case', () => {
  const latest = modelMatcher('*:latest');
  assert.ok(latest('x'), 'x is x:latest');
  assert.ok(!latest('x:v2'));
  const library = modelMatcher('library/*');
  assert.ok(library('Nomic-Embed-Text'), 'a bare name is in library');
  assert.ok(!library('jina/jina-embeddings'), 'another namespace is not');
  const registry = modelMatcher('registry.ollama.ai/*');
  assert.ok(registry('x'));
  assert.ok(!registry('example.com/team/x'));
  const secret = modelMatcher('secret-*');
  for (const name of spellingsOfSecret) assert.ok(secret(name), name);
});
