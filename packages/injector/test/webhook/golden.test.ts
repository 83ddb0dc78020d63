// Golden pods: each `<case>.in.yaml` (a pod and its surroundings) goes through the
// webhook's review; the patch it answers, applied to the pod, must give the pod in
// `<case>.out.yaml`, and a second pass over that pod must change nothing.
// UPDATE_GOLDEN=1 rewrites the out files from what the code does now.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { V1Pod } from '@kubernetes/client-node';
import jsonpatch, { type Operation } from 'fast-json-patch';
import { parse, stringify } from 'yaml';
import { z } from 'zod';
import { inject } from '../../src/webhook/inject.ts';
import { admissionReviewResponseSchema, reviewPodAdmission } from '../../src/webhook/review.ts';
import { injectionSettingsSchema } from '../../src/webhook/settings.ts';
import { podReview } from './support/review.ts';
import { testSettings } from './support/settings.ts';

const goldenDir = join(import.meta.dirname, '..', '..', 'testdata', 'golden');
const updating = process.env.UPDATE_GOLDEN === '1';

const caseSchema = z.object({
  namespace: z.string(),
  namespaceLabels: z.record(z.string(), z.string()).default({}),
  policy: z.record(z.string(), z.unknown()).optional().describe('What the bootstrap lookup finds'),
  settings: z.record(z.string(), z.unknown()).default({}).describe('Overrides of the test settings'),
  pod: z.record(z.string(), z.unknown()),
});

const expectedSchema = z.object({
  allowed: z.boolean(),
  message: z.string().optional(),
  warnings: z.array(z.string()).optional(),
  pod: z.record(z.string(), z.unknown()).optional(),
});
type Expected = z.infer<typeof expectedSchema>;

const cases = readdirSync(goldenDir)
  .filter((file) => file.endsWith('.in.yaml'))
  .map((file) => file.slice(0, -'.in.yaml'.length))
  .sort();

test('the golden set covers the contract', () => {
  assert.ok(cases.length >= 12, `only ${cases.length} golden cases`);
});

for (const name of cases) {
  test(`golden: ${name}`, async () => {
    const input = caseSchema.parse(parse(readFileSync(join(goldenDir, `${name}.in.yaml`), 'utf8')));
    const pod = input.pod as V1Pod;
    const settings = injectionSettingsSchema.parse({ ...testSettings, ...input.settings });
    const deps = {
      settings,
      namespaceLabels: async () => input.namespaceLabels,
      bootstrapPolicy: async () => input.policy,
    };

    const { review } = await reviewPodAdmission(podReview(input.namespace, structuredClone(pod)), deps);
    const response = admissionReviewResponseSchema.parse(review).response;
    const actual: Expected = { allowed: response.allowed };
    if (response.status !== undefined) actual.message = response.status.message;
    if (response.warnings !== undefined) actual.warnings = response.warnings;
    if (response.allowed) actual.pod = applied(pod, response.patch) as Record<string, unknown>;

    const outFile = join(goldenDir, `${name}.out.yaml`);
    if (updating) writeFileSync(outFile, stringify(actual, { lineWidth: 0 }));
    const expected = expectedSchema.parse(parse(readFileSync(outFile, 'utf8')));
    assert.deepEqual(actual, expected);
    if (!response.allowed) return;

    const namespaceOptIn = input.namespaceLabels['veil.dev/injection'] === 'enabled';
    const direct = inject({
      pod,
      namespace: input.namespace,
      namespaceOptIn,
      settings,
      bootstrapPolicy: input.policy,
    });
    assert.notEqual(direct.outcome, 'denied');
    if (direct.outcome !== 'denied')
      assert.deepEqual(direct.pod, actual.pod, 'the patch reproduces inject()');

    // Idempotency: the admitted pod, reviewed again (as on webhook reinvocation).
    const outPod = actual.pod as V1Pod;
    const again = await reviewPodAdmission(podReview(input.namespace, structuredClone(outPod)), deps);
    assert.equal(again.review.response.allowed, true);
    assert.equal(again.review.response.patch, undefined, 'a second pass patches nothing');
    const second = inject({
      pod: outPod,
      namespace: input.namespace,
      namespaceOptIn,
      settings,
      bootstrapPolicy: input.policy,
    });
    assert.equal(second.outcome, 'unchanged');
    if (second.outcome === 'unchanged') assert.deepEqual(second.pod, outPod);
  });
}

function applied(pod: V1Pod, patch: string | undefined): unknown {
  if (patch === undefined) return pod;
  const operations = JSON.parse(Buffer.from(patch, 'base64').toString('utf8')) as Operation[];
  return jsonpatch.applyPatch(structuredClone(pod), operations, true).newDocument;
}
