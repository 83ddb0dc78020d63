// kill -9 under load: a sidecar process is killed at random moments, again and
// again, and restarted on the same spool. Every request that got an answer
// must be on record in S3 exactly once: its full record, or, when the kill
// came after its answer but before the full record was synced, its durable
// first part (an incomplete request, which verify warns about). What an
// earlier process left behind is shipped by the next one under the earlier
// stream; the evidence verifies.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { decodeBatch, effectiveRecords, parseEvidenceKey, type StoredObject } from '@veil/core';
import { invalidFindings, verifyBucket } from './bucket.ts';
import { type Answer, markerCounts, runLoad } from './load.ts';
import { waitForGauge } from './metrics.ts';
import { type EvidenceEnv, startEvidenceEnv } from './setup.ts';

const runs = 20;
const childScript = join(import.meta.dirname, 'child.ts');
let evidence: EvidenceEnv;
const children = new Set<ChildProcess>();

before(async () => {
  // Small, frequent batches, so kills land while batches are cut, uploaded and released.
  evidence = await startEvidenceEnv({ maxRecords: 15, maxAgeSeconds: 0.1 });
});
after(async () => {
  for (const child of children) child.kill('SIGKILL');
  await evidence?.close();
});

type Running = { child: ChildProcess; url: string; adminUrl: string; exited: Promise<number | null> };

async function startChild(env: Record<string, string>): Promise<Running> {
  const child = spawn(process.execPath, [childScript], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const exited = once(child, 'exit').then(([code]) => {
    children.delete(child);
    return code as number | null;
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  for await (const line of lines) {
    const ready = JSON.parse(line) as { url: string; adminUrl: string };
    return { child, url: ready.url, adminUrl: ready.adminUrl, exited };
  }
  await exited;
  throw new Error(`the sidecar exited before serving: ${stderr.slice(0, 2000)}`);
}

test(`kill -9 at random moments in ${runs} runs loses no answered request`, async () => {
  const env = evidence.env(join(evidence.dir, 'spool'));
  const answers: Answer[] = [];
  const killDelays: number[] = [];
  const started = performance.now();
  for (let run = 0; run < runs; run++) {
    const sidecar = await startChild(env);
    let killed = false;
    let flowing: () => void = () => undefined;
    const firstAnswer = new Promise<void>((resolve) => {
      flowing = resolve;
    });
    const load = runLoad({
      url: sidecar.url,
      token: evidence.token,
      workers: 4,
      prefix: `run${run}`,
      stop: () => killed,
      stopOnNoResponse: true,
      onAnswer: () => flowing(),
    });
    // A random moment once requests flow: while records are appended, cut, uploaded or released.
    await firstAnswer;
    const delay = Math.round(Math.random() * 1000);
    killDelays.push(delay);
    await sleep(delay);
    sidecar.child.kill('SIGKILL');
    await sidecar.exited;
    killed = true;
    answers.push(...(await load));
  }

  // One more process ships what the killed ones left, then stops cleanly.
  const last = await startChild(env);
  await waitForGauge(last.adminUrl, 'veil_audit_records_waiting', (waiting) => waiting === 0);
  last.child.kill('SIGTERM');
  assert.equal(await last.exited, 0);
  const seconds = (performance.now() - started) / 1000;

  const { result, objects } = await verifyBucket(evidence.client, evidence.bucket);
  assert.deepEqual(invalidFindings(result), []);
  const answered = answers.filter((a) => a.status !== undefined);
  assert.ok(answered.length >= runs, `${answered.length} answered requests`);
  assert.deepEqual(
    answered.filter((a) => a.status !== 200).map((a) => `${a.status} ${a.body}`),
    [],
  );
  const requests = effectiveRecords(result.records);
  const counts = markerCounts(requests);
  const missing = answered.filter((a) => counts.get(a.marker) !== 1).map((a) => a.marker);
  assert.deepEqual(missing, [], 'every answered request has a durable record, complete or its first part');
  // A request cut off by the kill may or may not have become durable, but never twice.
  assert.ok([...counts.values()].every((count) => count === 1));
  const incomplete = new Set(requests.filter((r) => r.outcome === 'incomplete').map((r) => r.model));
  assert.equal(result.totals.incomplete, incomplete.size);
  const answeredIncomplete = answered.filter((a) => incomplete.has(a.marker)).length;
  assertDuplicatesReported(objects, result.findings);

  assert.equal(result.streams.length, runs + 1, 'one stream per process');
  const closed = result.streams.filter((stream) => stream.closed);
  assert.equal(closed.length, 1, 'only the last process closed its stream');
  const inFlight = answers.length - answered.length;
  console.log(
    `crash: ${runs} kills at ${killDelays.join(',')} ms after requests flowed; ` +
      `${answered.length} answered (${answeredIncomplete} of them recorded incomplete), ${inFlight} cut off; ` +
      `${result.totals.records} records of ${result.totals.requests} requests verified ` +
      `in ${result.totals.batches} batches over ${result.streams.length} streams (${seconds.toFixed(0)} s)`,
  );
});

/** A record shipped twice is acceptable only where the verifier says so. */
function assertDuplicatesReported(
  objects: readonly StoredObject[],
  findings: readonly { code: string; stream: string; key: string }[],
): void {
  const seen = new Map<string, string[]>();
  const batchKeys = new Set<string>();
  for (const object of objects) {
    const key = parseEvidenceKey(object.key);
    if (key?.kind !== 'batch' || !object.bytes) continue;
    // A second version of one batch (an upload retried while the killed
    // process's was still under way) is the verifier's rewritten-object.
    if (batchKeys.has(object.key)) {
      assert.ok(
        findings.some((f) => f.code === 'rewritten-object' && f.key === object.key),
        `${object.key} written twice without a finding`,
      );
      continue;
    }
    batchKeys.add(object.key);
    const decoded = decodeBatch(object.bytes);
    assert.ok(decoded.ok, object.key);
    for (const line of decoded.lines) {
      assert.ok(line.ok, object.key);
      const id = `${line.record.stream} ${line.record.seq}`;
      seen.set(id, [...(seen.get(id) ?? []), object.key]);
    }
  }
  for (const [id, keys] of seen) {
    if (keys.length === 1) continue;
    const stream = id.split(' ')[0];
    assert.ok(
      findings.some((f) => f.code === 'duplicate-record' && f.stream === stream),
      `${id} shipped in ${keys.join(' and ')} without a finding; the stream's findings: ${JSON.stringify(
        findings.filter((f) => f.stream === stream),
      )}`,
    );
  }
}
