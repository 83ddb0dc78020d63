// What `veil policy lint` (and `veil dev`) print for a policy file that cannot
// be read: one "FILE: field.path: message" line per problem.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { loadPolicyFile } from '../src/policy/load.ts';

let root: string;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'veil-cli-policy-'));
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

test('a missing file is one problem of the file, without its name twice', async () => {
  assert.deepEqual(await loadPolicyFile(join(root, 'nope.yaml')), {
    ok: false,
    problems: [{ path: '(file)', message: 'no such file or directory (ENOENT)' }],
  });
});

test('a YAML syntax error is one line with its position, without the excerpt', async () => {
  const file = join(root, 'broken.yaml');
  await writeFile(file, 'apiVersion: veil.dev/v1alpha1\nmetadata: {name: x\nspec: {}\n');
  const loaded = await loadPolicyFile(file);
  assert.equal(loaded.ok, false);
  const problems = loaded.ok ? [] : loaded.problems;
  assert.ok(problems.length > 0);
  for (const problem of problems) {
    assert.equal(problem.path, '(yaml)');
    assert.doesNotMatch(problem.message, /\n/);
    assert.match(problem.message, /at line \d+, column \d+$/);
  }
});

test('a service-account issuer no sidecar could discover keys from is a problem of its field', async () => {
  const file = join(root, 'issuer.yaml');
  await writeFile(
    file,
    [
      'apiVersion: veil.dev/v1alpha1',
      'kind: EmbeddingPolicy',
      'metadata: {name: default}',
      'spec:',
      '  authentication:',
      '    serviceAccountTokens: {issuer: kubernetes/serviceaccount}',
      '',
    ].join('\n'),
  );
  assert.deepEqual(await loadPolicyFile(file), {
    ok: false,
    problems: [
      {
        path: 'spec.authentication.serviceAccountTokens.issuer',
        message: 'must be an https URL (plain http only on loopback) to discover keys from; or set jwksUri',
      },
    ],
  });
});
