// Golden pods: each `<case>.in.yaml` (a pod and its surroundings) goes through the
// webhook's review; the patch it answers, applied to the pod, must give the pod in
// `<case>.out.yaml`, and a second pass over that pod must change nothing.
// UPDATE_GOLDEN=1 rewrites the out files from what the code does now, and fails
// each case it rewrote: a rewritten file is compared with nothing but itself.
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
import { injectorUsername, testSettings, testTrust } from './support/settings.ts';

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

/** The cases the injection contract needs, each with the part of it that it shows. */
const requiredCases: Record<string, string> = {
  'deployment-pod': 'the pod annotation opts in; the proxy takes over the named port a Service targets',
  'namespace-opt-in': 'the namespace label opts in, with every default',
  'opt-out': 'the pod annotation "false" opts out of an opted-in namespace',
  'not-opted-in': 'a pod nothing opts in is left alone',
  'injector-namespace': "the injector's own namespace is never injected",
  'kube-system': 'kube-system is never injected',
  'already-injected': 'an injected pod comes back unchanged',
  'job-pod': 'the native sidecar lets a Job complete',
  'native-sidecars-off': 'before Kubernetes 1.29 the sidecar is a plain container',
  'named-ports': 'veil.dev/upstream-port picks a port by name',
  'bad-upstream-port': 'veil.dev/upstream-port naming no declared port is refused',
  'bad-policy-name': 'veil.dev/policy that cannot name a policy is refused',
  'bad-api': 'veil.dev/api outside openai, tei, ollama, cohere, auto is refused',
  'policy-missing': 'a policy that does not exist yet: injected without a bootstrap policy',
  'forged-injected-label': 'a pod labelled injected without a sidecar never starts unaudited',
};

test('the golden set covers the contract', () => {
  const missing = Object.entries(requiredCases).filter(([name]) => !cases.includes(name));
  assert.deepEqual(
    missing.map(([name, shows]) => `${name}: ${shows}`),
    [],
    'golden cases missing',
  );
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
      controllerTrust: () => testTrust,
      trustWriters: [injectorUsername],
    };

    const { review } = await reviewPodAdmission(podReview(input.namespace, structuredClone(pod)), deps);
    const response = admissionReviewResponseSchema.parse(review).response;
    const actual: Expected = { allowed: response.allowed };
    if (response.status !== undefined) actual.message = response.status.message;
    if (response.warnings !== undefined) actual.warnings = response.warnings;
    if (response.allowed) actual.pod = applied(pod, response.patch) as Record<string, unknown>;

    const outFile = join(goldenDir, `${name}.out.yaml`);
    if (updating) {
      writeFileSync(outFile, stringify(actual, { lineWidth: 0 }));
      assert.fail(`${name}.out.yaml rewritten: review its diff, then run again without UPDATE_GOLDEN`);
    }
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
      trust: testTrust,
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
      trust: testTrust,
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
