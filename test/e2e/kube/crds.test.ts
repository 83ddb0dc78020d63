// The CRDs in crds/ against the real API server: kubectl installs them, the
// example policy passes the server's validation, a structurally bad one is
// refused with the field at fault, and `kubectl get` prints Veil's columns.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type ControlPlane, startControlPlane } from '../../harness/index.ts';
import { installCrds, kubectl, kubectlFails, repoRoot } from './support/cluster.ts';

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
