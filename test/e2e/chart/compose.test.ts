// The laptop demo (docker-compose.yml) without Docker: its model, issuer and
// proxy run as the compose file runs them (the same scripts, entry point and
// environment; only ports, directories and the S3 server are this test's own),
// against a real S3 server with Object Lock. Then the auditor's commands from
// the README pull and verify what the proxy shipped.
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { CreateBucketCommand, PutObjectLockConfigurationCommand } from '@aws-sdk/client-s3';
import OpenAI from 'openai';
import { parse } from 'yaml';
import { freePort, type S3Server, startS3 } from '../../harness/index.ts';
import { repoRoot } from './support.ts';

const run = promisify(execFile);

type Service = {
  environment?: Record<string, string>;
  entrypoint?: string[];
  command?: string[];
  ports?: string[];
  network_mode?: string;
  volumes?: string[];
};

let compose: { services: Record<string, Service> };
let s3: S3Server;
let dir: string;
const children: ChildProcess[] = [];

before(async () => {
  compose = parse(await readFile(join(repoRoot, 'docker-compose.yml'), 'utf8'));
  dir = await mkdtemp(join(tmpdir(), 'veil-compose-'));
  s3 = await startS3();
  // What the minio-setup service does with mc: a bucket with Object Lock and a
  // COMPLIANCE default retention of one day.
  const setup = compose.services['minio-setup']?.command?.[0] ?? '';
  assert.match(setup, /mc mb --with-lock --ignore-existing demo\/veil-evidence/);
  assert.match(setup, /mc retention set --default COMPLIANCE 1d demo\/veil-evidence/);
  const client = s3.client();
  await client.send(new CreateBucketCommand({ Bucket: 'veil-evidence', ObjectLockEnabledForBucket: true }));
  await client.send(
    new PutObjectLockConfigurationCommand({
      Bucket: 'veil-evidence',
      ObjectLockConfiguration: {
        ObjectLockEnabled: 'Enabled',
        Rule: { DefaultRetention: { Mode: 'COMPLIANCE', Days: 1 } },
      },
    }),
  );
  client.destroy();
});
after(async () => {
  for (const child of children)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await s3?.destroy();
  await rm(dir, { recursive: true, force: true });
});

function service(name: string): Service {
  const found = compose.services[name];
  assert.ok(found, `docker-compose.yml has a ${name} service`);
  return found;
}

/** Runs a service's node entry point from the sources' root, as the image does. */
function startService(
  args: string[],
  env: Record<string, string>,
): { child: ChildProcess; output: () => string } {
  const child = spawn(process.execPath, args, {
    cwd: repoRoot,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let output = '';
  child.stdout?.on('data', (chunk) => (output += chunk));
  child.stderr?.on('data', (chunk) => (output += chunk));
  return { child, output: () => output };
}

function scriptOf(name: string): string[] {
  const entrypoint = service(name).entrypoint ?? [];
  assert.equal(entrypoint[0], '/nodejs/bin/node', `${name} runs the image's node`);
  return entrypoint.slice(1);
}

async function waitUntil(what: string, check: () => Promise<boolean>, output: () => string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch {}
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${what}:\n${output()}`);
}

test('compose: the proxy authenticates, masks, answers in the OpenAI dialect and ships evidence that verifies', async () => {
  const proxyService = service('proxy');
  const composeEnv = proxyService.environment ?? {};
  // The model and the issuer share the proxy's network namespace, so loopback reaches them.
  assert.equal(service('model').network_mode, 'service:proxy');
  assert.equal(service('issuer').network_mode, 'service:proxy');
  const modelPort = service('model').environment?.MODEL_PORT;
  assert.equal(composeEnv.VEIL_UPSTREAM, `http://127.0.0.1:${modelPort}`);
  for (const port of [
    composeEnv.VEIL_PROXY_PORT,
    composeEnv.VEIL_ADMIN_PORT,
    service('issuer').environment?.TOKEN_PORT,
  ]) {
    assert.ok(
      proxyService.ports?.includes(`127.0.0.1:${port}:${port}`),
      `port ${port} is published on loopback`,
    );
  }
  // The policy the proxy mounts trusts the issuer the compose file starts.
  const policyMount = proxyService.volumes?.find((v) =>
    v.endsWith(`:${composeEnv.VEIL_BOOTSTRAP_POLICY_FILE}:ro`),
  );
  assert.ok(policyMount);
  const policy = JSON.parse(await readFile(join(repoRoot, policyMount.split(':')[0] as string), 'utf8'));
  const issuerUrl = `http://127.0.0.1:${service('issuer').environment?.ISSUER_PORT}`;
  assert.equal(policy.spec.authentication.oidc[0].issuer, issuerUrl);

  // Free ports of this test's own in place of the compose file's fixed ones.
  const ports = {
    model: await freePort(),
    issuer: await freePort(),
    tokens: await freePort(),
    proxy: await freePort(),
    admin: await freePort(),
  };
  const model = startService(scriptOf('model'), { MODEL_PORT: String(ports.model) });
  const issuer = startService(scriptOf('issuer'), {
    ISSUER_PORT: String(ports.issuer),
    TOKEN_HOST: '127.0.0.1',
    TOKEN_PORT: String(ports.tokens),
  });
  policy.spec.authentication.oidc[0].issuer = `http://127.0.0.1:${ports.issuer}`;
  const policyFile = join(dir, 'policy.json');
  await writeFile(policyFile, JSON.stringify(policy));
  const volume = join(dir, 'veil-spool');
  const proxy = startService(['packages/sidecar/src/main.ts'], {
    ...composeEnv,
    VEIL_UPSTREAM: `http://127.0.0.1:${ports.model}`,
    VEIL_PROXY_PORT: String(ports.proxy),
    VEIL_ADMIN_PORT: String(ports.admin),
    VEIL_BOOTSTRAP_POLICY_FILE: policyFile,
    VEIL_STATE_DIR: (composeEnv.VEIL_STATE_DIR as string).replace('/var/lib/veil', volume),
    VEIL_SPOOL_DIR: (composeEnv.VEIL_SPOOL_DIR as string).replace('/var/lib/veil', volume),
    VEIL_S3_ENDPOINT: s3.endpoint,
    AWS_ACCESS_KEY_ID: s3.credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
  });
  const output = () => [model.output(), issuer.output(), proxy.output()].join('\n');
  await waitUntil(
    'the proxy to be ready',
    async () => (await fetch(`http://127.0.0.1:${ports.admin}/readyz`)).ok,
    output,
  );
  await waitUntil(
    'the token endpoint',
    async () => (await fetch(`http://127.0.0.1:${ports.tokens}/token`)).ok,
    output,
  );
  // Any answer will do: the model is up (the proxy's readiness does not wait for it).
  await waitUntil(
    'the model',
    async () => (await fetch(`http://127.0.0.1:${ports.model}/`)).status > 0,
    output,
  );

  // As the README and the compose file's header do it.
  const token = (
    await (await fetch(`http://127.0.0.1:${ports.tokens}/token?sub=alice&groups=ml-readers`)).text()
  ).trim();
  const viaCurl = await fetch(`http://127.0.0.1:${ports.proxy}/v1/embeddings`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'demo', input: ['mail me at jane@example.com'] }),
  });
  assert.equal(viaCurl.status, 200, await viaCurl.clone().text());
  const client = new OpenAI({ baseURL: `http://127.0.0.1:${ports.proxy}/v1`, apiKey: token, maxRetries: 0 });
  const { data } = await client.embeddings.create({ model: 'demo', input: ['mail me at jane@example.com'] });
  assert.equal(data[0]?.embedding.length, 384);
  // Someone outside ml-readers is refused, in the SDK's own error type.
  const outsider = (
    await (await fetch(`http://127.0.0.1:${ports.tokens}/token?sub=mallory&groups=interns`)).text()
  ).trim();
  await assert.rejects(
    new OpenAI({
      baseURL: `http://127.0.0.1:${ports.proxy}/v1`,
      apiKey: outsider,
      maxRetries: 0,
    }).embeddings.create({
      model: 'demo',
      input: ['hello'],
    }),
    (error: Error & { status?: number }) =>
      error instanceof OpenAI.PermissionDeniedError && error.status === 403,
  );

  // `docker compose stop proxy`: SIGTERM, a clean exit, and the closing manifest.
  proxy.child.kill('SIGTERM');
  const [code] = await once(proxy.child, 'exit');
  assert.equal(code, 0, proxy.output());
  model.child.kill('SIGTERM');
  issuer.child.kill('SIGTERM');
  assert.deepEqual((await once(model.child, 'exit'))[0], 0);

  // The auditor's path.
  const auditor = {
    ...process.env,
    AWS_ACCESS_KEY_ID: s3.credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
  };
  const evidence = join(dir, 'evidence');
  const veil = (...args: string[]) =>
    run(process.execPath, ['packages/cli/src/main.ts', ...args], { cwd: repoRoot, env: auditor });
  await veil(
    'evidence',
    'pull',
    '--endpoint',
    s3.endpoint,
    '--path-style',
    '--bucket',
    'veil-evidence',
    '--out',
    evidence,
  );
  const verified = await veil('evidence', 'verify', evidence);
  assert.doesNotMatch(verified.stdout, /^INVALID/m, verified.stdout);
  // Three requests: two reached the model, each recorded in two parts, one was refused.
  assert.match(verified.stdout, /1 streams, \d+ batches, 5 records verified, 0 gaps/);

  // And straight from the bucket, as the README's compose section does it.
  const direct = await veil(
    'evidence',
    'verify',
    's3://veil-evidence',
    '--endpoint',
    s3.endpoint,
    '--path-style',
  );
  assert.match(direct.stdout, /1 streams, \d+ batches, 5 records verified, 0 gaps/);

  // The records name the caller and the masking, never the address itself.
  const { stdout: json } = await veil('evidence', 'verify', evidence, '--json');
  const result = JSON.parse(json) as { totals: { requests: number }; streams: { closed: boolean }[] };
  assert.equal(result.totals.requests, 3);
  assert.equal(result.streams[0]?.closed, true, 'the clean stop closed the stream');
  const batches = (await readdir(join(evidence, 'objects'), { recursive: true })).filter(
    (file) => file.includes('/batches/') && !file.endsWith('.meta.json'),
  );
  assert.ok(batches.length > 0);
  const lines = (
    await Promise.all(
      batches.map(async (file) => gunzipSync(await readFile(join(evidence, 'objects', file))).toString()),
    )
  ).join('');
  assert.doesNotMatch(lines, /jane@example\.com/);
  const records = lines
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line));
  const allowed = records.filter((r) => r.outcome === 'allowed');
  assert.equal(allowed.length, 2);
  for (const record of allowed) {
    assert.equal(record.identity.subject, 'alice');
    assert.ok(
      record.masking.some(
        (m: { rule: string; detector: string }) => m.rule === 'emails' && m.detector === 'email',
      ),
    );
  }
  assert.ok(records.some((r) => r.outcome === 'denied' && r.identity.subject === 'mallory'));
});
