// S3 goes away under load, and stays away until the spool is full. Records pile
// up in the spool until then; only then are new requests refused (503), and
// nothing that reached the model or got an answer goes unrecorded. When S3 comes
// back the sidecar ships the backlog by itself, and the evidence verifies clean.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { effectiveRecords } from '@veil/core';
import { configFromEnv, type RunningSidecar, startSidecar } from '@veil/sidecar';
import { invalidFindings, verifyBucket } from './bucket.ts';
import { type Answer, markerCounts, runLoad } from './load.ts';
import { readGauge, waitForGauge } from './metrics.ts';
import { type EvidenceEnv, startEvidenceEnv } from './setup.ts';

// Only a guard against a spool that never fills: how fast it fills depends on the machine's load.
const fillDeadlineMs = 600_000;
const capacityBytes = 1024 * 1024;
let evidence: EvidenceEnv;
let sidecar: RunningSidecar | undefined;
let s3Down = false;
const savedEnv = { ...process.env };

before(async () => {
  evidence = await startEvidenceEnv({ maxRecords: 500, maxAgeSeconds: 0.1 });
});
after(async () => {
  if (s3Down) await evidence.s3.start().catch(() => undefined);
  await sidecar?.close();
  await evidence?.close();
  process.env = savedEnv;
});

// 'healing': S3 is starting again; shipping may free the spool before the start
// returns, so a refusal decided while it was full can arrive when it no longer is.
type Phase = 'before' | 'outage' | 'healing' | 'after';
type Refusal = { phase: Phase; accepting: boolean; body: string };

/** Waits, S3 down, until the full spool has had a request refused. */
async function untilRefused(refused: () => boolean, admin: string): Promise<void> {
  const deadline = Date.now() + fillDeadlineMs;
  while (!refused()) {
    if (Date.now() > deadline) {
      const bytes = await readGauge(admin, 'veil_audit_spool_bytes');
      assert.fail(`no request was refused with S3 down; the spool holds ${bytes} of ${capacityBytes} bytes`);
    }
    await sleep(100);
  }
}

test('an S3 outage under load loses nothing, refuses only once the spool is full, and heals by itself', async () => {
  const env = evidence.env(join(evidence.dir, 'spool'), { VEIL_SPOOL_CAPACITY_BYTES: String(capacityBytes) });
  // The S3 client reads its credentials from the SDK's default chain, the environment here.
  Object.assign(process.env, env);
  const running = await startSidecar(configFromEnv(env));
  sidecar = running;
  const admin = running.adminUrl;

  let phase: Phase = 'before';
  let stop = false;
  let acceptedAfter = false;
  const refusals: Refusal[] = [];
  const onAnswer = (answer: Answer) => {
    if (answer.status === 503) {
      refusals.push({ phase, accepting: running.sink.accepting(), body: answer.body });
    } else if (answer.status === 200 && phase === 'after') {
      acceptedAfter = true;
    }
  };
  const load = runLoad({
    url: running.url,
    token: evidence.token,
    workers: 4,
    prefix: 'outage',
    stop: () => stop,
    onAnswer,
  });

  await sleep(2_000);
  await evidence.s3.stop();
  s3Down = true;
  phase = 'outage';
  await untilRefused(() => refusals.length > 0, admin);
  const spoolBytes = (await readGauge(admin, 'veil_audit_spool_bytes')) ?? 0;
  const backlog = (await readGauge(admin, 'veil_audit_records_waiting')) ?? 0;
  const oldestAge = (await readGauge(admin, 'veil_audit_oldest_unshipped_age_seconds')) ?? 0;

  const healing = performance.now();
  phase = 'healing';
  await evidence.s3.start();
  s3Down = false;
  phase = 'after';
  while (!acceptedAfter) await sleep(50);
  stop = true;
  const answers = await load;
  // Nobody tells the sidecar S3 is back: its retries find out.
  await waitForGauge(admin, 'veil_audit_records_waiting', (waiting) => waiting < backlog);
  const resumed = performance.now();
  await waitForGauge(admin, 'veil_audit_records_waiting', (waiting) => waiting === 0);
  const drained = performance.now();
  console.log(
    `outage: ${answers.length} requests, ${refusals.length} refused; when S3 came back the spool held ` +
      `${spoolBytes} of ${capacityBytes} bytes, ${backlog} records (oldest ${oldestAge.toFixed(0)} s); ` +
      `shipping resumed ${((resumed - healing) / 1000).toFixed(1)} s later and shipped the rest at ` +
      `${(backlog / ((drained - healing) / 1000)).toFixed(0)} records/s (from S3's return), ` +
      `${(backlog / Math.max(0.001, (drained - resumed) / 1000)).toFixed(0)} records/s (from the first upload)`,
  );

  await running.close();
  sidecar = undefined;

  // 503 only once the spool was full: never before the outage, and during it only while refusing.
  assert.ok(refusals.length > 0, 'the spool filled during the outage');
  assert.deepEqual(
    refusals.filter((r) => r.phase === 'before'),
    [],
  );
  assert.deepEqual(
    refusals.filter((r) => r.phase === 'outage' && r.accepting),
    [],
  );
  assert.ok(refusals.every((r) => /spool is full|could not be recorded/.test(r.body)));

  const { result } = await verifyBucket(evidence.client, evidence.bucket);
  assert.deepEqual(invalidFindings(result), []);
  const counts = markerCounts(effectiveRecords(result.records));
  const answered = answers.filter((a) => a.status === 200).map((a) => a.marker);
  assert.deepEqual(
    answered.filter((marker) => counts.get(marker) !== 1),
    [],
    'every answered request has exactly one record',
  );
  assert.deepEqual(
    [...evidence.modelSaw].filter((marker) => counts.get(marker) !== 1),
    [],
    'every request that reached the model has exactly one record',
  );
  assert.equal(result.streams.length, 1);
  assert.equal(result.streams[0]?.closed, true);
  assert.equal(result.totals.gaps, 0);
});
