// `veil`'s own words: help for a group of commands and for one command, the version,
// and what `policy lint` prints.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { authenticationPolicy } from './support/policy.ts';

const veil = join(import.meta.dirname, '..', 'src', 'main.ts');

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [veil, ...args],
      { env: { ...process.env, VEIL_DEBUG: '' } },
      (error, stdout, stderr) => resolve({ code: error ? (error.code as number) : 0, stdout, stderr }),
    );
  });
}

const evidenceCommands =
  /veil evidence pull +download.*\n.*veil evidence verify +verify.*\n.*veil evidence report +write/;

test('a group with --help lists its commands and exits 0', async () => {
  const evidence = await run(['evidence', '--help']);
  assert.equal(evidence.code, 0, evidence.stderr);
  assert.match(evidence.stdout, evidenceCommands);
  assert.doesNotMatch(evidence.stdout, /veil (approvals|dev)/);
  const approvals = await run(['approvals', '-h']);
  assert.equal(approvals.code, 0, approvals.stderr);
  for (const name of ['list', 'show', 'approve', 'deny']) {
    assert.match(approvals.stdout, new RegExp(`veil approvals ${name} `));
  }
});

test('a group alone lists its commands and exits 2: no command was run', async () => {
  const { code, stderr } = await run(['evidence']);
  assert.equal(code, 2);
  assert.match(stderr, evidenceCommands);
  assert.doesNotMatch(stderr, /unknown command/);
});

test('help X Y shows the help of X Y; help of a group lists it; help of nothing known exits 2', async () => {
  const verify = await run(['help', 'evidence', 'verify']);
  assert.equal(verify.code, 0);
  assert.match(verify.stdout, /^Usage: veil evidence verify DIR/);
  const group = await run(['help', 'approvals']);
  assert.equal(group.code, 0);
  assert.match(group.stdout, /^Usage: veil approvals <command>/);
  const unknown = await run(['help', 'frobnicate']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /^veil: unknown command "frobnicate"/);
});

test('--version prints the version of the CLI package', async () => {
  const { version } = JSON.parse(await readFile(join(import.meta.dirname, '..', 'package.json'), 'utf8'));
  const { code, stdout } = await run(['--version']);
  assert.equal(code, 0);
  assert.equal(stdout, `${version}\n`);
});

test('policy lint prints a warning line per loopback key source and still exits 0', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'veil-cli-lint-'));
  try {
    const file = join(dir, 'loopback.yaml');
    const issuers = ['http://localhost:8082', 'https://login.example.com'];
    await writeFile(
      file,
      authenticationPolicy([
        'oidc:',
        ...issuers.map((issuer) => `  - {issuer: ${issuer}, audiences: [veil]}`),
      ]),
    );
    const { code, stdout } = await run(['policy', 'lint', file]);
    assert.equal(code, 0);
    const lines = stdout.trimEnd().split('\n');
    assert.equal(lines.length, 2);
    assert.match(
      lines[0] as string,
      /: warning: spec\.authentication\.oidc\.0\.issuer: plain http on loopback .* use https$/,
    );
    assert.ok(lines[0]?.startsWith(`${file}: `));
    assert.match(lines[1] as string, /: ok \(default, sha256:[0-9a-f]{64}\)$/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
