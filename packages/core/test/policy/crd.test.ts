import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { allCrds, embeddingPolicyCrd } from '@veil/core';
import { renderCrd } from '../../../../scripts/gen-crds.ts';

const crdDir = join(import.meta.dirname, '..', '..', '..', '..', 'crds');

test('crds/ match what the zod schemas generate (run `npm run gen:crds` after a schema change)', async () => {
  for (const [file, crd] of Object.entries(allCrds())) {
    assert.equal(await readFile(join(crdDir, file), 'utf8'), renderCrd(crd), `crds/${file} has drifted`);
  }
});

test('the policy CRD is structural: no additionalProperties beside properties', () => {
  const walk = (node: unknown): void => {
    if (!node || typeof node !== 'object') return;
    const record = node as Record<string, unknown>;
    assert.ok(
      !('properties' in record && 'additionalProperties' in record),
      'additionalProperties beside properties',
    );
    assert.ok(!('$schema' in record));
    for (const value of Object.values(record)) walk(value);
  };
  walk(embeddingPolicyCrd());
});

test('the policy CRD carries the schema limits of the zod source', () => {
  const version = (embeddingPolicyCrd().spec as { versions: { schema: { openAPIV3Schema: unknown } }[] })
    .versions[0];
  const limits = (version?.schema.openAPIV3Schema as any).properties.spec.properties.limits.properties;
  assert.equal(limits.maxInputsPerRequest.minimum, 1);
  assert.equal(limits.maxInputsPerRequest.default, 256);
  const approvals = (version?.schema.openAPIV3Schema as any).properties.spec.properties.approvals;
  assert.deepEqual(approvals.default, { rules: [], maxPendingPerCaller: 10 });
  const { minimum, maximum } = approvals.properties.maxPendingPerCaller;
  assert.deepEqual([minimum, maximum], [1, 1000]);
});
