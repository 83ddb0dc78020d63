import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { DEFAULT_SPOOL_CAPACITY_BYTES, exportSigningKey, generateSigningKey } from '@veil/core';
import { openAuditRecorder } from '../../src/audit/setup.ts';
import { configFromEnv } from '../../src/config.ts';
import { startDemoModel } from '../../src/demo/model.ts';
import { startSidecar } from '../../src/sidecar.ts';
import type { Telemetry } from '../../src/telemetry.ts';
import { startTestIssuer } from '../fixtures/issuer.ts';
import { draft, invalid, teardown, tempDir, verifyDir } from './helpers.ts';

test('configFromEnv reads the audit settings', () => {
  const config = configFromEnv({
    VEIL_UPSTREAM: 'http://127.0.0.1:9000',
    VEIL_CLUSTER: 'prod-eu-1',
    VEIL_S3_ENDPOINT: 'http://127.0.0.1:9001',
    VEIL_S3_BUCKET: 'evidence',
    VEIL_S3_REGION: 'eu-west-1',
    VEIL_S3_FORCE_PATH_STYLE: 'true',
    VEIL_S3_PREFIX: 'team-a/',
    VEIL_SPOOL_DIR: 'spool',
    VEIL_SPOOL_CAPACITY_BYTES: '1048576',
    VEIL_RETENTION_SECONDS: '30',
    VEIL_SIGNING_KEY_FILE: 'key.jwk',
    VEIL_AUDIT_CLOSE_GRACE_SECONDS: '5',
  });
  assert.equal(config.cluster, 'prod-eu-1');
  assert.equal(config.s3Endpoint, 'http://127.0.0.1:9001');
  assert.equal(config.s3Bucket, 'evidence');
  assert.equal(config.s3Region, 'eu-west-1');
  assert.equal(config.s3ForcePathStyle, true);
  assert.equal(config.s3Prefix, 'team-a/');
  assert.equal(config.spoolDir, 'spool');
  assert.equal(config.spoolCapacityBytes, 1_048_576);
  assert.equal(config.retentionSeconds, 30);
  assert.equal(config.signingKeyFile, 'key.jwk');
  assert.equal(config.auditCloseGraceSeconds, 5);
});

test('configFromEnv refuses a cluster name that cannot name a stream, and an unclear flag', () => {
  const base = { VEIL_UPSTREAM: 'http://127.0.0.1:9000' };
  assert.throws(() => configFromEnv({ ...base, VEIL_CLUSTER: 'prod/eu' }), /cluster/);
  assert.throws(() => configFromEnv({ ...base, VEIL_S3_FORCE_PATH_STYLE: 'yes' }), /s3ForcePathStyle/);
});

test('without a bucket, a sidecar ships to the local evidence directory with the configured key', async (t) => {
  const defer = teardown(t);
  const dir = await tempDir(defer);
  const issuer = await startTestIssuer();
  defer(() => issuer.stop());
  const model = await startDemoModel();
  defer(() => model.close());
  const signingKey = generateSigningKey();
  const keyFile = join(dir, 'signing.jwk');
  await writeFile(keyFile, JSON.stringify(exportSigningKey(signingKey)));
  const policyFile = join(dir, 'policy.json');
  const spec = {
    authentication: { oidc: [{ issuer: issuer.issuer, audiences: ['veil'], algorithms: ['ES256'] }] },
    access: { rules: [{ name: 'all', groups: ['ml'], models: ['*'] }] },
  };
  await writeFile(policyFile, JSON.stringify({ name: 'local', spec }));
  const logged: string[] = [];
  const stderrWrite = process.stderr.write.bind(process.stderr);
  t.mock.method(process.stderr, 'write', (chunk: string | Uint8Array, ...rest: never[]) => {
    logged.push(String(chunk));
    return stderrWrite(chunk, ...rest);
  });
  const sidecar = await startSidecar(
    configFromEnv({
      VEIL_UPSTREAM: model.url,
      VEIL_HOST: '127.0.0.1',
      VEIL_PROXY_PORT: '0',
      VEIL_ADMIN_PORT: '0',
      VEIL_BOOTSTRAP_POLICY_FILE: policyFile,
      VEIL_AUDIT_DIR: join(dir, 'evidence'),
      VEIL_SIGNING_KEY_FILE: keyFile,
    }),
  );
  let closed = false;
  defer(() => (closed ? undefined : sidecar.close()));
  const token = await issuer.mint({ sub: 'alice', aud: 'veil', groups: ['ml'] });
  for (const model of ['m1', 'm2', 'm3']) {
    const response = await fetch(`${sidecar.url}/v1/embeddings`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model, input: ['hello'] }),
    });
    assert.equal(response.status, 200);
    await response.arrayBuffer();
  }
  await sidecar.close();
  closed = true;

  const result = await verifyDir(join(dir, 'evidence'));
  assert.deepEqual(invalid(result), []);
  assert.ok(result.findings.some((f) => f.code === 'not-worm'));
  // Each request reached the model: its first part, then its full record.
  assert.deepEqual(
    result.records.map((r) => [r.model, r.outcome]),
    [
      ['m1', 'incomplete'],
      ['m1', 'allowed'],
      ['m2', 'incomplete'],
      ['m2', 'allowed'],
      ['m3', 'incomplete'],
      ['m3', 'allowed'],
    ],
  );
  assert.equal(result.totals.requests, 3);
  assert.equal(result.totals.incomplete, 0);
  assert.equal(result.streams[0]?.keyId, signingKey.keyId);
  assert.equal(result.streams[0]?.closed, true);
  assert.match(result.streams[0]?.stream ?? '', /^local\/local\/local\/\d{8}T\d{9}Z-[0-9a-f]{8}$/);
  // The pod's log says which key signs the stream, apart from the evidence: an auditor pins it.
  const keyLines = logged
    .flatMap((line) => line.split('\n'))
    .filter((line) => line.includes('signs with key'))
    .map((line) => JSON.parse(line));
  assert.deepEqual(
    keyLines.map(({ level, message }) => ({ level, message })),
    [
      {
        level: 'info',
        message: `audit stream ${result.streams[0]?.stream} signs with key ${signingKey.keyId}; trusted-keys line: ${signingKey.keyId} local/local/local/*`,
      },
    ],
  );
});

test('the spool gauges read the open recorder and are removed once it is done with', async (t) => {
  const defer = teardown(t);
  const dir = await tempDir(defer);
  const readers = new Map<string, () => number>();
  // Only the gauge registry matters here: the meter itself is the process's.
  const telemetry = {
    gauge(name: string, _description: string, read: () => number) {
      readers.set(name, read);
      return () => readers.delete(name);
    },
  } as unknown as Telemetry;
  const config = configFromEnv({
    VEIL_UPSTREAM: 'http://127.0.0.1:9000',
    VEIL_AUDIT_DIR: join(dir, 'evidence'),
    VEIL_SPOOL_DIR: join(dir, 'spool'),
  });
  const { recorder, dropGauges } = await openAuditRecorder(config, { telemetry, policy: () => undefined });
  defer(() => recorder.close());
  assert.deepEqual([...readers.keys()].sort(), [
    'veil_audit_oldest_unshipped_age_seconds',
    'veil_audit_records_waiting',
    'veil_audit_shipping_failures',
    'veil_audit_spool_bytes',
    'veil_audit_spool_capacity_bytes',
    'veil_audit_store_conflict',
    'veil_audit_store_misconfigured',
    'veil_audit_store_not_locked',
  ]);
  await recorder.append(draft('m1'));
  assert.ok((readers.get('veil_audit_spool_bytes')?.() ?? 0) > 0);
  assert.equal(readers.get('veil_audit_spool_capacity_bytes')?.(), DEFAULT_SPOOL_CAPACITY_BYTES);
  assert.equal(readers.get('veil_audit_store_conflict')?.(), 0);
  assert.equal(readers.get('veil_audit_store_not_locked')?.(), 0);
  assert.equal(readers.get('veil_audit_store_misconfigured')?.(), 0);
  dropGauges();
  assert.equal(readers.size, 0);
});
