// What `veil policy lint` (and `veil dev`) print for a policy file: one
// "FILE: field.path: message" line per problem, and the warnings of a valid one.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { loadPolicyFile } from '../src/policy/load.ts';
import { authenticationPolicy } from './support/policy.ts';

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
  await writeFile(file, authenticationPolicy(['serviceAccountTokens: {issuer: kubernetes/serviceaccount}']));
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

test('keys read over plain http on loopback are a warning of their field, not a problem', async () => {
  const file = join(root, 'loopback.yaml');
  await writeFile(
    file,
    authenticationPolicy([
      'oidc:',
      '  - {issuer: https://login.example.com, audiences: [veil]}',
      '  - {issuer: http://127.0.0.1:8082, audiences: [veil]}',
    ]),
  );
  const loaded = await loadPolicyFile(file);
  assert.equal(loaded.ok, true);
  assert.deepEqual(loaded.ok ? loaded.warnings : [], [
    {
      path: 'spec.authentication.oidc.1.issuer',
      message:
        "plain http on loopback is for veil dev and tests: in a pod, the model container shares the sidecar's loopback, so it could serve its own key set there and mint tokens for any identity; use https",
    },
  ]);
});
