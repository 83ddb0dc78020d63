// Requests through a real sidecar become locked, signed evidence in a real S3
// server, and core's verifier accounts for every one of them.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { effectiveRecords, parseEvidenceKey } from '@veil/core';
import { configFromEnv, type RunningSidecar, startSidecar } from '@veil/sidecar';
import { invalidFindings, verifyBucket } from './bucket.ts';
import { markerCounts, runLoad } from './load.ts';
import { readGauge, waitForGauge } from './metrics.ts';
import { type EvidenceEnv, startEvidenceEnv } from './setup.ts';

const run = promisify(execFile);
const veil = join(import.meta.dirname, '..', '..', '..', 'node_modules', '.bin', 'veil');
const requests = 200;
let evidence: EvidenceEnv;
let sidecar: RunningSidecar | undefined;
const savedEnv = { ...process.env };

before(async () => {
  evidence = await startEvidenceEnv({ maxRecords: 40 });
});
after(async () => {
  await sidecar?.close();
  await evidence?.close();
  process.env = savedEnv;
});

test('every request is on verified, locked record exactly once; close seals the stream', async () => {
  const env = evidence.env(join(evidence.dir, 'spool'));
  // The S3 client reads its credentials from the SDK's default chain, the environment here.
  Object.assign(process.env, env);
  sidecar = await startSidecar(configFromEnv(env));

  const started = performance.now();
  let sent = 0;
  const answers = await runLoad({
    url: sidecar.url,
    token: evidence.token,
    workers: 8,
    prefix: 'roundtrip',
    stop: () => sent++ >= requests,
  });
  assert.equal(answers.length, requests);
  assert.deepEqual(
    answers.filter((a) => a.status !== 200),
    [],
  );
  await waitForGauge(sidecar.adminUrl, 'veil_audit_records_waiting', (waiting) => waiting === 0);
  const seconds = (performance.now() - started) / 1000;
  console.log(
    `round trip: ${requests} requests answered and shipped, ${(requests / seconds).toFixed(0)} records/s`,
  );

  for (const name of ['veil_audit_spool_bytes', 'veil_audit_oldest_unshipped_age_seconds']) {
    assert.notEqual(await readGauge(sidecar.adminUrl, name), undefined, name);
  }

  // The sidecar runs with 60 s of retention: each object is locked at least that long from when S3 wrote it.
  const open = await verifyBucket(evidence.client, evidence.bucket, { minRetentionDays: 60 / 86_400 });
  assert.deepEqual(invalidFindings(open.result), []);
  assert.equal(open.result.totals.requests, requests);
  assert.equal(open.result.streams[0]?.closed, false);
  for (const object of open.objects) {
    assert.equal(object.lockMode, 'COMPLIANCE', object.key);
    assert.ok(object.checksumSha256, `${object.key} has a stored SHA-256`);
    assert.ok(
      (object.retainUntil?.getTime() ?? 0) > (object.lastModified?.getTime() ?? Infinity),
      object.key,
    );
  }

  await sidecar.close();
  sidecar = undefined;
  const closed = await verifyBucket(evidence.client, evidence.bucket, { minRetentionDays: 60 / 86_400 });
  assert.deepEqual(invalidFindings(closed.result), []);
  // Every request reached the model, so each is two record parts, counted once.
  assert.equal(closed.result.totals.records, 2 * requests);
  assert.equal(closed.result.totals.requests, requests);
  assert.equal(closed.result.totals.incomplete, 0);
  assert.equal(closed.result.streams.length, 1);
  assert.equal(closed.result.streams[0]?.closed, true);
  assert.equal(
    closed.result.streams[0]?.stream.split('/').slice(0, 3).join('/'),
    `e2e/ml/${env.VEIL_POD_UID}`,
  );
  const counts = markerCounts(effectiveRecords(closed.result.records));
  assert.ok(
    answers.every((a) => counts.get(a.marker) === 1),
    'each answered request has exactly one record',
  );
  assert.ok(closed.result.findings.every((f) => f.level !== 'WARN' || f.code === 'retention-expired'));
  const kinds = closed.objects.map((o) => parseEvidenceKey(o.key)?.kind);
  assert.ok(kinds.includes('batch') && kinds.includes('manifest'));
});

test("the auditor's three commands, as a user runs them, agree with the requests sent", async () => {
  const out = join(evidence.dir, 'pulled');
  const cli = (...args: string[]) =>
    run(process.execPath, [veil, ...args], {
      env: { ...process.env, ...evidence.env(join(evidence.dir, 'spool')) },
    });
  await cli(
    'evidence',
    'pull',
    '--endpoint',
    evidence.s3.endpoint,
    '--path-style',
    '--bucket',
    evidence.bucket,
    '--out',
    out,
  );

  const verified = await cli('evidence', 'verify', out);
  assert.doesNotMatch(verified.stdout, /INVALID/);
  assert.match(
    verified.stdout,
    new RegExp(`1 streams, \\d+ batches, ${2 * requests} records verified, 0 gaps`),
  );

  const json = join(evidence.dir, 'report.json');
  await cli('evidence', 'report', out, '--json', json, '--html', join(evidence.dir, 'report.html'));
  const report = JSON.parse(await readFile(json, 'utf8')) as {
    populations: { name: string; count: number }[];
  };
  assert.equal(report.populations.find((p) => p.name === 'requests')?.count, requests);
  assert.equal(
    report.populations.find((p) => p.name === 'denials')?.count,
    0,
    'every request was answered 200',
  );
});
