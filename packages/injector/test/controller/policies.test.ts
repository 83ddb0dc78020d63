import assert from 'node:assert/strict';
import { test } from 'node:test';
import { policyHash, policySpecSchema } from '@veil/core';
import { fieldPath, judge, policyView } from '../../src/controller/policies.ts';

test('field paths read the way kubectl prints them', () => {
  assert.equal(
    fieldPath(['spec', 'masking', 'rules', 0, 'patterns', 1, 'regex']),
    'spec.masking.rules[0].patterns[1].regex',
  );
  assert.equal(fieldPath(['spec']), 'spec');
});

test('a valid spec is hashed as the sidecar hashes it and kept as written', () => {
  const spec = { limits: { maxInputsPerRequest: 10 } };
  const verdict = judge(spec);
  assert.equal(verdict.valid, true);
  if (!verdict.valid) return;
  assert.equal(verdict.hash, policyHash(policySpecSchema.parse(spec)));
  assert.equal(verdict.spec, spec);
});

test('RE2 decides user patterns: a look-behind is invalid, at its path', () => {
  const verdict = judge({
    masking: {
      rules: [
        {
          name: 'ids',
          patterns: [{ name: 'id', regex: '(?<=ID-)\\d+' }],
          operator: 'redact',
          scopes: ['forward'],
        },
      ],
    },
  });
  assert.equal(verdict.valid, false);
  if (verdict.valid) return;
  assert.equal(verdict.problems.length, 1);
  assert.match(verdict.problems[0] ?? '', /^spec\.masking\.rules\[0\]\.patterns\[0\]\.regex: /);
});

test('a stored object becomes a view; one without metadata does not', () => {
  const view = policyView({
    apiVersion: 'veil.dev/v1alpha1',
    kind: 'EmbeddingPolicy',
    metadata: { name: 'default', namespace: 'ml', uid: 'u1', resourceVersion: '7', generation: 2 },
    spec: {},
    status: { contentHash: 'sha256:x', sync: '1/1', unknown: true },
  });
  assert.equal(view?.key, 'ml/default');
  assert.equal(view?.generation, 2);
  assert.equal(view?.verdict.valid, true);
  assert.deepEqual(view?.status, { contentHash: 'sha256:x', sync: '1/1' });
  assert.equal(policyView({ metadata: { name: 'x' } }), undefined);
});
