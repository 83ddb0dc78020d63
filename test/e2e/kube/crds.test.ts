// The CRDs in crds/ against the real API server: kubectl installs them, the
// example policy passes the server's validation, a structurally bad one is
// refused with the field at fault, and `kubectl get` prints Veil's columns.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { policyStatusSchema } from '@veil/core';
import { StatusWriter, silentLog } from '@veil/injector';
import { type ControlPlane, startControlPlane } from '../../harness/index.ts';
import {
  applyPolicy,
  eventually,
  installCrds,
  kubectl,
  kubectlFails,
  repoRoot,
  type StoredPolicy,
} from './support/cluster.ts';

type Stored = StoredPolicy & { metadata: { resourceVersion: string } };

let cp: ControlPlane;

before(async () => {
  cp = await startControlPlane();
  await installCrds(cp);
});
after(async () => {
  await cp?.stop();
});

test('kubectl applies examples/policy.yaml and reads it back', async () => {
  await kubectl(cp, 'create', 'namespace', 'ml');
  const out = await kubectl(cp, 'apply', '-f', join(repoRoot, 'examples', 'policy.yaml'));
  assert.match(out, /embeddingpolicy\.veil\.dev\/default created/);
  const stored = JSON.parse(await kubectl(cp, 'get', 'embeddingpolicy', 'default', '-n', 'ml', '-o', 'json'));
  assert.equal(stored.spec.masking.rules[4].patterns[0].regex, 'EMP-[0-9]{6}');
  assert.equal(stored.spec.limits.maxInputsPerRequest, 256);
});

test('the API server refuses a structurally bad policy and names the field', async () => {
  await kubectl(cp, 'create', 'namespace', 'bad-structure');
  const file = join(cp.dir, 'bad-policy.yaml');
  await writeFile(
    file,
    [
      'apiVersion: veil.dev/v1alpha1',
      'kind: EmbeddingPolicy',
      'metadata: {name: broken, namespace: bad-structure}',
      'spec:',
      '  limits: {maxInputsPerRequest: lots}',
      '  masking:',
      '    rules:',
      '      - {name: emails, detectors: [email], operator: scramble, scopes: [forward]}',
      '',
    ].join('\n'),
  );
  const error = await kubectlFails(cp, 'apply', '-f', file);
  assert.match(error, /spec\.limits\.maxInputsPerRequest/);
  assert.match(error, /spec\.masking\.rules\[0\]\.operator/);
  assert.match(error, /Unsupported value: "scramble"/);
  const listed = await kubectl(cp, 'get', 'embeddingpolicies', '-n', 'bad-structure', '-o', 'name');
  assert.equal(listed.trim(), '');
});

test('kubectl get embeddingpolicies prints READY, IN SYNC and HASH', async () => {
  const out = await kubectl(cp, 'get', 'embeddingpolicies', '-n', 'ml');
  const [header, row] = out.trim().split('\n');
  assert.deepEqual(header?.split(/\s{2,}/), ['NAME', 'READY', 'IN SYNC', 'HASH', 'AGE']);
  assert.match(row ?? '', /^default\s/);
});

test('status goes through the status subresource; a stale write gets 409 and is recomputed', async () => {
  await kubectl(cp, 'create', 'namespace', 'status');
  await applyPolicy(cp, 'status', 'default', {});
  const api = cp.kubeConfig().makeApiClient(CustomObjectsApi);
  const target = {
    group: 'veil.dev',
    version: 'v1alpha1',
    plural: 'embeddingpolicies',
    namespace: 'status',
    name: 'default',
  };
  let seen = (await api.getNamespacedCustomObject(target)) as Stored;
  const generation = seen.metadata.generation;
  // Someone else writes after the controller last looked: its view is stale.
  await api.patchNamespacedCustomObjectStatus(
    { ...target, body: { status: { sync: '0/9' } } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );
  const wanted = { observedGeneration: generation, podsInSync: 0, podsTotal: 0, sync: '0/0' };
  let observed = 0;
  const writer = new StatusWriter({
    api,
    plan: () => ({
      kind: 'write',
      namespace: 'status',
      name: 'default',
      resourceVersion: seen.metadata.resourceVersion,
      status: wanted,
      stored: seen.status === undefined ? undefined : policyStatusSchema.parse(seen.status),
    }),
    observe: (object) => {
      observed++;
      seen = object as Stored;
    },
    intervalMs: 0,
    log: silentLog,
  });
  writer.activate();
  writer.schedule('status/default');
  // The API server has the write before the writer has its answer: wait for both.
  const stored = await eventually('the status written, and the writer told', async () => {
    const now = (await api.getNamespacedCustomObject(target)) as Stored;
    return now.status?.sync === '0/0' && writer.writes > 0 ? now : undefined;
  });
  writer.deactivate();
  assert.deepEqual(stored.status, wanted);
  assert.equal(writer.writes, 1, 'one write went through');
  assert.equal(observed, 2, 'the 409 made it read the object again, then it saw its own write');
  assert.equal(stored.metadata.generation, generation, 'status writes leave the spec generation alone');
});
