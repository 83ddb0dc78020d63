import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { V1Pod } from '@kubernetes/client-node';
import jsonpatch from 'fast-json-patch';
import { parse } from 'yaml';
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

// The diff promises fast-json-patch's own operations, in its order: checked on
// every golden pod and on the shape changes a pod mutator can make.
test('the diff gives the operations of fast-json-patch compare', () => {
  const dir = join(import.meta.dirname, '..', '..', 'testdata', 'golden');
  const pairs: [unknown, unknown][] = [];
  for (const file of readdirSync(dir).filter((name) => name.endsWith('.in.yaml'))) {
    const input = parse(readFileSync(join(dir, file), 'utf8')) as { pod: unknown };
    const output = parse(readFileSync(join(dir, file.replace('.in.', '.out.')), 'utf8')) as { pod?: unknown };
    if (output.pod !== undefined) pairs.push([input.pod, output.pod]);
  }
  assert.ok(pairs.length >= 10, `only ${pairs.length} golden pods with an outcome pod`);
  pairs.push(
    [{ a: [1, 2, 3] }, { a: [1] }],
    [{ a: [1] }, { a: [3, 1, 2] }],
    [{ a: { b: 1 } }, { a: [1] }],
    [{ a: [1] }, { a: { '0': 1 } }],
    [
      { a: 1, 'x/y~z': 2 },
      { b: 1, 'x/y~z': 3 },
    ],
    [{ a: null }, { a: { b: null } }],
    [{ a: 'x' }, { a: undefined }],
    [
      [1, { b: 2 }],
      [1, { b: 3, c: [4] }],
    ],
  );
  for (const [before, after] of pairs) {
    const expected = jsonpatch.compare(before as object, after as object);
    assert.deepEqual(podPatch(before as V1Pod, after as V1Pod), expected);
  }
});
