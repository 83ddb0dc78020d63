import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { V1Pod } from '@kubernetes/client-node';
import jsonpatch from 'fast-json-patch';
import { encodePatch, podPatch } from '../../src/webhook/patch.ts';

const pod: V1Pod = {
  metadata: { name: 'p', annotations: { keep: 'yes' } },
  spec: { containers: [{ name: 'model', image: 'example/model:1' }] },
};

test('an unchanged pod gives an empty patch and no patch field', () => {
  const patch = podPatch(pod, structuredClone(pod));
  assert.deepEqual(patch, []);
  assert.equal(encodePatch(patch), undefined);
});

test('annotation keys with a slash are escaped per RFC 6901', () => {
  const mutated = structuredClone(pod);
  if (mutated.metadata?.annotations) mutated.metadata.annotations['veil.dev/status'] = '{}';
  assert.deepEqual(podPatch(pod, mutated), [
    { op: 'add', path: '/metadata/annotations/veil.dev~1status', value: '{}' },
  ]);
});

test('the encoded patch decodes to operations that rebuild the mutated pod', () => {
  const mutated = structuredClone(pod);
  if (mutated.spec) {
    mutated.spec.initContainers = [{ name: 'veil-proxy', image: 'example/veil:1', restartPolicy: 'Always' }];
    mutated.spec.containers = [{ name: 'first', image: 'example/first:1' }, ...mutated.spec.containers];
  }
  const encoded = encodePatch(podPatch(pod, mutated));
  assert.ok(encoded);
  const operations = JSON.parse(Buffer.from(encoded, 'base64').toString('utf8'));
  const rebuilt = jsonpatch.applyPatch(structuredClone(pod), operations, true).newDocument;
  assert.deepEqual(rebuilt, mutated);
});
