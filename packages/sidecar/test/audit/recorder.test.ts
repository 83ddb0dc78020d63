import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { appendFile, cp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout } from 'node:timers/promises';
import { gunzipSync } from 'node:zlib';
import { parseEvidenceKey, sha256Hex, streamId, verifyEvidence } from '@veil/core';
import { DirEvidenceStore } from '../../src/audit/dirstore.ts';
import { AuditRecorder, type AuditRecorderOptions } from '../../src/audit/recorder.ts';
import type { BatchSettings, ShippingSettings } from '../../src/audit/shipper.ts';
import { Spool } from '../../src/audit/spool.ts';
import { AuditStateError } from '../../src/audit/state.ts';
import { RecordEncoder } from '../../src/audit/stream.ts';
import {
  type Defer,
  draft,
  eventually,
  invalid,
  openFilesUnder,
  readEvidenceDir,
  ScriptedStore,
  teardown,
  tempDir,
  verifyDir,
} from './helpers.ts';

const pod = { namespace: 'ml', name: 'embed-0', uid: 'pod-uid-1' };
const never: BatchSettings = { maxRecords: 1_000_000, maxBytes: 256 * 1024 * 1024, maxAgeSeconds: 3600 };

type Setup = { spoolDir: string; evidenceDir: string; store: ScriptedStore; defer: Defer };

async function setup(t: TestContext): Promise<Setup> {
  const defer = teardown(t);
  const root = await tempDir(defer);
  const evidenceDir = join(root, 'evidence');
  const store = new ScriptedStore(new DirEvidenceStore(evidenceDir));
  return { spoolDir: join(root, 'spool'), evidenceDir, store, defer };
}

async function open(
  s: Setup,
  batch: Partial<BatchSettings>,
  overrides: Partial<AuditRecorderOptions> = {},
): Promise<AuditRecorder> {
  const recorder = await AuditRecorder.open({
    spoolDir: s.spoolDir,
    identity: { cluster: 'test', pod, incarnation: 'inc-1' },
    store: s.store,
    settings: () => ({ batch: { ...never, ...batch }, retentionMs: 1000 }),
    closeGraceMs: 10_000,
    backoff: { baseMs: 5, capMs: 20 },
    ...overrides,
  });
  s.defer(() => recorder.close());
  return recorder;
}

async function appendMany(recorder: AuditRecorder, prefix: string, count: number): Promise<void> {
  await Promise.all(Array.from({ length: count }, (_, i) => recorder.append(draft(`${prefix}-${i}`))));
}

test('records ship in batches cut by count, chained from genesis to close, and verify clean', async (t) => {
  const s = await setup(t);
  const recorder = await open(s, { maxRecords: 10 });
  for (let i = 0; i < 5; i++) await appendMany(recorder, `r${i}`, 7);
  await eventually('three full batches', () => recorder.stats().shippedBatches >= 3);
  await recorder.close();

  const result = await verifyDir(s.evidenceDir);
  assert.deepEqual(invalid(result), []);
  assert.equal(result.totals.records, 35);
  assert.equal(result.streams.length, 1);
  assert.equal(result.streams[0]?.stream, 'test/ml/pod-uid-1/inc-1');
  assert.equal(result.streams[0]?.closed, true);
  assert.deepEqual(
    result.records.map((r) => r.seq),
    Array.from({ length: 35 }, (_, i) => i),
  );
  // Count cuts hold at most maxRecords; only the close flushes a shorter tail.
  const batches = s.store.puts.filter((key) => key.includes('/batches/'));
  assert.ok(batches.length >= 4, batches.join());
  assert.equal(recorder.stats().recordsWaiting, 0);
});

test('genesis comes first, each batch before its manifest, and the close last', async (t) => {
  const s = await setup(t);
  const recorder = await open(s, { maxRecords: 3 });
  await appendMany(recorder, 'a', 6);
  await recorder.close();
  const kinds = s.store.puts.map((key) => {
    const parsed = parseEvidenceKey(key);
    assert.ok(parsed, key);
    return `${parsed.kind}${parsed.seq}`;
  });
  assert.equal(kinds[0], 'manifest0');
  for (const [index, kind] of kinds.entries()) {
    if (kind.startsWith('batch')) assert.equal(kinds[index + 1], `manifest${kind.slice(5)}`);
  }
  const last = s.store.puts.at(-1) as string;
  const manifests = kinds.filter((k) => k.startsWith('manifest'));
  assert.equal(kinds.at(-1), manifests.at(-1));
  assert.ok(last.endsWith('.json'));
});

test('a batch is cut by size before its count is reached', async (t) => {
  const s = await setup(t);
  const recorder = await open(s, { maxBytes: 4096 });
  await appendMany(recorder, 'sized', 40);
  await eventually('a batch cut by size', () => recorder.stats().shippedBatches >= 1);
  await recorder.close();
  const result = await verifyDir(s.evidenceDir);
  assert.deepEqual(invalid(result), []);
  assert.equal(result.totals.records, 40);
  assert.ok(result.totals.batches >= 5, `${result.totals.batches} batches of at most 4 KiB of lines`);
});

test('batches larger than one read of the spool keep their limits and every record', async (t) => {
  const s = await setup(t);
  // Over several pages of the spool: 700 records to a batch.
  const byCount = await open(s, { maxRecords: 700 });
  await appendMany(byCount, 'paged', 1500);
  await eventually('two full batches', () => byCount.stats().shippedBatches >= 2);
  assert.equal(byCount.stats().shippedRecords, 1400);
  await byCount.close();
  const result = await verifyDir(s.evidenceDir);
  assert.deepEqual(invalid(result), []);
  assert.equal(result.totals.records, 1500);
  assert.deepEqual(
    result.records.map((r) => r.seq),
    Array.from({ length: 1500 }, (_, i) => i),
  );
});

test('a size cut in a later page of the spool stops before the record that would not fit', async (t) => {
  const s = await setup(t);
  // About 400 records of 380 bytes: the cut falls in the second page of the spool.
  const maxBytes = 150 * 1024;
  const recorder = await open(s, { maxBytes });
  await appendMany(recorder, 'sized-paged', 1200);
  await eventually('a batch cut by size', () => recorder.stats().shippedBatches >= 1);
  await recorder.close();
  const result = await verifyDir(s.evidenceDir);
  assert.deepEqual(invalid(result), []);
  assert.equal(result.totals.records, 1200);
  const batches = (await readdir(s.evidenceDir, { recursive: true })).filter((f) => f.endsWith('.ndjson.gz'));
  assert.ok(batches.length >= 3, `${batches.length} batches of at most ${maxBytes} bytes of lines`);
  for (const file of batches) {
    const lines = gunzipSync(await readFile(join(s.evidenceDir, file)))
      .toString('utf8')
      .split('\n')
      .slice(0, -1);
    const bytes = lines.reduce((total, line) => total + Buffer.byteLength(line), 0);
    assert.ok(bytes <= maxBytes, `${file}: ${bytes} bytes of lines`);
  }
});

test('a batch is cut by age when neither count nor size is reached', async (t) => {
  const s = await setup(t);
  const recorder = await open(s, { maxAgeSeconds: 0.1 });
  await appendMany(recorder, 'aged', 3);
  await eventually('a batch cut by age', () => recorder.stats().shippedRecords === 3);
  assert.equal(recorder.stats().recordsWaiting, 0);
});

test('a clock that steps back holds no record back from its batch', async (t) => {
  const s = await setup(t);
  let clock = 1_000_000;
  const recorder = await open(s, { maxAgeSeconds: 10 }, { spoolClock: () => clock });
  await appendMany(recorder, 'before', 1);
  await setTimeout(100);
  assert.equal(recorder.stats().shippedRecords, 0, 'not due yet');
  // An hour back: the first record's commit time now lies in the future.
  clock -= 3_600_000;
  await appendMany(recorder, 'after', 1);
  await eventually('both records shipped', () => recorder.stats().shippedRecords === 2, 2_000);
});

test('records stay in the spool until batch and manifest are both acknowledged', async (t) => {
  const s = await setup(t);
  let manifestsDown = true;
  s.store.failing = (key) => manifestsDown && key.includes('/manifests/') && !key.endsWith('0000.json');
  const recorder = await open(s, { maxRecords: 5 });
  await appendMany(recorder, 'held', 5);
  await eventually('the batch uploaded and its manifest refused', () => s.store.failures >= 3);
  assert.ok(s.store.puts.some((key) => key.includes('/batches/')));
  assert.equal(recorder.stats().recordsWaiting, 5);
  assert.equal(recorder.stats().shippedRecords, 0);
  assert.equal(recorder.stats().conflict, false, 'a store that is away is an outage, not a conflict');

  // Shipping resumes by itself; the batch is sent again, found identical, and the manifest follows.
  manifestsDown = false;
  await eventually('shipping resumed', () => {
    const stats = recorder.stats();
    return stats.recordsWaiting === 0 && stats.failures === 0;
  });
  await recorder.close();
  const result = await verifyDir(s.evidenceDir);
  assert.deepEqual(invalid(result), []);
  assert.equal(result.totals.records, 5);
});

test('a key already holding other bytes is told apart from an outage, in stats and log', async (t) => {
  const s = await setup(t);
  const first = await open(s, {});
  await first.close();
  // The spool and its state lost while the incarnation is kept: the new genesis
  // (another key, another time) meets the stored one at the same key.
  await rm(s.spoolDir, { recursive: true });
  const logged: string[] = [];
  const second = await open(s, {}, { log: (message) => logged.push(message), closeGraceMs: 200 });
  await eventually('the conflict retried', () => second.stats().failures >= 2);
  assert.equal(second.stats().conflict, true);
  assert.match(
    logged[0] ?? '',
    /EvidenceConflictError: .*already holds other bytes; .*retrying cannot resolve this/,
  );
  assert.equal(second.stats().shippedBatches, 0);
});

test("the recorder's key id pins its stream, the same when the incarnation restarts", async (t) => {
  const s = await setup(t);
  s.store.failing = () => true;
  const first = await open(s, {}, { backoff: { baseMs: 60_000, capMs: 60_000 }, closeGraceMs: 0 });
  await appendMany(first, 'before', 3);
  // The same incarnation after a crash: the spool directory as it is now.
  const crashed = join(s.spoolDir, '..', 'crashed');
  await cp(s.spoolDir, crashed, { recursive: true });
  const again = await open(
    {
      ...s,
      spoolDir: crashed,
      store: new ScriptedStore(new DirEvidenceStore(s.evidenceDir)),
    },
    {},
  );
  await appendMany(again, 'after', 2);
  await again.close();

  assert.equal(again.keyId, first.keyId);
  const verify = async (keyId: string) =>
    verifyEvidence(await readEvidenceDir(s.evidenceDir), {
      bucketLock: 'local',
      now: new Date(),
      trustedKeys: [{ keyId, streams: 'test/ml/pod-uid-1/*' }],
    });
  const pinned = await verify(again.keyId);
  assert.deepEqual(invalid(pinned), []);
  assert.equal(pinned.totals.records, 5);
  assert.ok(!pinned.findings.some((f) => f.code === 'keys-not-pinned'));
  const otherKey = await verify('A'.repeat(43));
  assert.ok(
    invalid(otherKey).some((finding) => finding.startsWith('untrusted-key')),
    invalid(otherKey).join(),
  );
});

test('the next batch is made while one uploads: records that come after it go in a later batch', async (t) => {
  const s = await setup(t);
  let down = true;
  s.store.failing = (key) => down && key.includes('/batches/');
  const recorder = await open(s, { maxRecords: 5, maxAgeSeconds: 0.1 });
  await appendMany(recorder, 'first', 5);
  await eventually('the first batch is refused', () => s.store.failures >= 1);
  await appendMany(recorder, 'due', 2);
  // Those two come of age while the first batch is retried, and are made into the next batch then.
  await setTimeout(200);
  const failures = s.store.failures;
  await eventually('two more attempts', () => s.store.failures >= failures + 2);
  await appendMany(recorder, 'late', 3);
  down = false;
  await eventually('everything shipped', () => recorder.stats().recordsWaiting === 0);
  await recorder.close();
  // Closed: no spool file is left open by a batch made ahead.
  assert.deepEqual(await openFilesUnder(s.spoolDir), []);

  const result = await verifyDir(s.evidenceDir);
  assert.deepEqual(invalid(result), []);
  const batches = await Promise.all(
    [...new Set(s.store.puts.filter((key) => key.includes('/batches/')))].map(async (key) =>
      gunzipSync(await readFile(join(s.evidenceDir, key)))
        .toString()
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line).seq),
    ),
  );
  assert.deepEqual(batches, [
    [0, 1, 2, 3, 4],
    [5, 6],
    [7, 8, 9],
  ]);
});

test('a full spool stops accepting, and drains once the store is back', async (t) => {
  const s = await setup(t);
  let down = true;
  s.store.failing = () => down;
  const recorder = await open(s, { maxRecords: 50, maxAgeSeconds: 0.1 }, { capacityBytes: 64 * 1024 });
  let taken = 0;
  while (recorder.accepting()) {
    await recorder.append(draft(`fill-${taken}`));
    taken += 1;
  }
  assert.ok(taken > 10, `${taken} records before full`);
  // Requests already let in still find room; a refusal for want of room does not.
  await recorder.append(draft('admitted'));
  assert.throws(() => recorder.append(draft('refused', 'unavailable')), /full/);

  down = false;
  await eventually('the spool drained', () => recorder.stats().recordsWaiting === 0);
  assert.equal(recorder.accepting(), true);
  await recorder.close();
  const result = await verifyDir(s.evidenceDir);
  assert.deepEqual(invalid(result), []);
  assert.equal(result.totals.records, taken + 1);
  // The refused record took no seq: the stream has no gap.
  assert.equal(result.totals.gaps, 0);
});

test('a restart on a volume that filled up while the store was away ships, frees it and records again', async (t) => {
  const s = await setup(t);
  const volume = join(s.spoolDir, '..', 'volume');
  await mkdir(volume);
  const module = (path: string) => JSON.stringify(new URL(path, import.meta.url).href);
  // A 3 MiB tmpfs in a mount namespace of the child's own (a user namespace
  // makes it its root there), behind a spool whose capacity it cannot hold.
  const child = spawn(
    'unshare',
    [
      '--user',
      '--map-root-user',
      '--mount',
      '/bin/sh',
      '-c',
      'mount -t tmpfs -o size=3m veil-spool "$VOLUME" && exec "$0" "$@"',
      process.execPath,
      '--input-type=module',
      '-e',
      `const { AuditRecorder } = await import(${module('../../src/audit/recorder.ts')});
       const { DirEvidenceStore } = await import(${module('../../src/audit/dirstore.ts')});
       const { ScriptedStore, draft } = await import(${module('./helpers.ts')});
       const [volume, evidenceDir] = process.argv.slice(1);
       const logged = [];
       const options = (store, incarnation, closeGraceMs) => ({
         log: (line) => logged.push(line),
         spoolDir: volume + '/spool',
         capacityBytes: 16 * 1024 * 1024,
         identity: { cluster: 'test', pod: ${JSON.stringify(pod)}, incarnation },
         store,
         settings: () => ({ batch: { maxRecords: 100000, maxBytes: 8 * 1024 * 1024, maxAgeSeconds: 3600 }, retentionMs: 1000 }),
         closeGraceMs,
         backoff: { baseMs: 5, capMs: 20 },
       });
       const away = new ScriptedStore(new DirEvidenceStore(evidenceDir));
       away.failing = () => true;
       const first = await AuditRecorder.open(options(away, 'inc-1', 300));
       let acknowledged = 0;
       let refused;
       while (refused === undefined) {
         const results = await Promise.allSettled(Array.from({ length: 64 }, (_, i) => first.append(draft('fill-' + acknowledged + '-' + i))));
         acknowledged += results.filter((result) => result.status === 'fulfilled').length;
         refused = results.find((result) => result.status === 'rejected')?.reason;
       }
       await first.close();
       const back = new ScriptedStore(new DirEvidenceStore(evidenceDir));
       const next = await AuditRecorder.open(options(back, 'inc-2', 10000)).catch((error) => error);
       if (next instanceof Error) {
         process.stdout.write(JSON.stringify({ acknowledged, refused: refused.cause?.code, start: next.message, logged }));
         process.exit(0);
       }
       const deadline = Date.now() + 20000;
       while (next.stats().recordsWaiting > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
       const drained = next.stats().recordsWaiting === 0;
       const after = drained ? await next.append(draft('after')).then(() => 'taken', (error) => error.name) : 'not tried';
       await next.close();
       process.stdout.write(JSON.stringify({ acknowledged, refused: refused.cause?.code, start: 'ok', drained, after, logged }));`,
      volume,
      s.evidenceDir,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, VOLUME: volume } },
  );
  let output = '';
  child.stdout.on('data', (data) => {
    output += String(data);
  });
  const [code] = await once(child, 'close');
  assert.equal(code, 0);
  const { acknowledged, refused, logged, ...restart } = JSON.parse(output);
  assert.equal(refused, 'ENOSPC', 'the volume filled up before the spool did');
  assert.deepEqual(restart, { start: 'ok', drained: true, after: 'taken' }, logged.join('\n'));
  const result = await verifyDir(s.evidenceDir);
  assert.equal(result.totals.records, acknowledged + 1);
  assert.deepEqual(invalid(result), []);
});

test('batches keep the retention they were cut with: a lowered or unloaded policy shortens no lock of the stream', async (t) => {
  const s = await setup(t);
  const day = 86_400_000;
  let settings: ShippingSettings = { batch: { ...never, maxRecords: 2 }, retentionMs: 30 * day };
  s.store.failing = () => true;
  const recorder = await open(s, {}, { settings: () => settings });
  await appendMany(recorder, 'answered-under-30-days', 2);
  // During the outage the policy lowers its retention, then is revoked: a shorter default would apply.
  settings = { ...settings, retentionMs: 7 * day };
  await appendMany(recorder, 'answered-under-7-days', 2);
  settings = { ...settings, retentionMs: day, retentionKnown: false };
  const uploadedFrom = Date.now();
  s.store.failing = () => false;
  await recorder.close();

  const locks = [...s.store.retainUntil].map(([key, until]) => [
    parseEvidenceKey(key)?.kind,
    Math.round((until - uploadedFrom) / day),
  ]);
  // Every object of the stream, batches and manifests alike, keeps the longest retention cut with.
  assert.deepEqual(
    locks.map(([, days]) => days),
    locks.map(() => 30),
  );
  assert.equal(locks.length, 6);
});

test('records an earlier process left are shipped under its own stream and key', async (t) => {
  const s = await setup(t);
  s.store.failing = () => true;
  const first = await open(
    s,
    { maxRecords: 4 },
    { backoff: { baseMs: 60_000, capMs: 60_000 }, closeGraceMs: 0 },
  );
  await appendMany(first, 'before', 9);
  // What a crash leaves behind: the spool directory as it is now.
  const crashed = join(s.spoolDir, '..', 'crashed');
  await cp(s.spoolDir, crashed, { recursive: true });

  const after: Setup = {
    ...s,
    spoolDir: crashed,
    store: new ScriptedStore(new DirEvidenceStore(s.evidenceDir)),
  };
  const second = await open(
    after,
    { maxRecords: 4 },
    { identity: { cluster: 'test', pod, incarnation: 'inc-2' } },
  );
  await appendMany(second, 'after', 3);
  await second.close();

  const result = await verifyDir(s.evidenceDir);
  assert.deepEqual(invalid(result), []);
  const byStream = new Map(result.streams.map((stream) => [stream.stream, stream]));
  const earlier = byStream.get(
    streamId({ cluster: 'test', namespace: 'ml', podUid: 'pod-uid-1', incarnation: 'inc-1' }),
  );
  const later = byStream.get(second.stream);
  assert.equal(earlier?.records, 9);
  assert.equal(earlier?.closed, false, 'a crashed stream stays unclosed');
  assert.equal(later?.records, 3);
  assert.equal(later?.closed, true);
  assert.notEqual(earlier?.keyId, later?.keyId);
  assert.ok(result.findings.some((f) => f.code === 'unclosed-stream' && f.stream === earlier?.stream));
});

test('a torn tail cut off on open is said in the log, not left silent', async (t) => {
  const s = await setup(t);
  const first = await open(s, {});
  await appendMany(first, 'before', 3);
  await first.close();
  const segment = (await readdir(s.spoolDir)).filter((name) => name.endsWith('.seg')).at(-1) as string;
  await appendFile(join(s.spoolDir, segment), Buffer.from([40, 0, 0, 0, 1, 2, 3]));
  const logged: string[] = [];
  await open(
    s,
    {},
    {
      identity: { cluster: 'test', pod, incarnation: 'inc-2' },
      log: (message) => logged.push(message),
    },
  );
  assert.ok(
    logged.some((message) => /cut 7 bytes off the end of the last segment/.test(message)),
    logged.join('\n'),
  );
});

test('the same incarnation reopened carries on its record seq', async (t) => {
  const s = await setup(t);
  s.store.failing = () => true;
  const first = await open(s, {}, { backoff: { baseMs: 60_000, capMs: 60_000 }, closeGraceMs: 0 });
  await appendMany(first, 'one', 3);
  const crashed = join(s.spoolDir, '..', 'crashed');
  await cp(s.spoolDir, crashed, { recursive: true });

  const again = await open(
    { ...s, spoolDir: crashed, store: new ScriptedStore(new DirEvidenceStore(s.evidenceDir)) },
    {},
  );
  await appendMany(again, 'two', 2);
  await again.close();
  const result = await verifyDir(s.evidenceDir);
  assert.deepEqual(invalid(result), []);
  assert.equal(result.streams.length, 1);
  assert.deepEqual(
    result.records.map((r) => r.seq),
    [0, 1, 2, 3, 4],
  );
});

/**
 * A copy of the spool of a process that crashed with `count` answered records
 * not yet cut into a batch; `withState` false leaves the shipper state out.
 */
async function crashedWithUncut(s: Setup, count: number, withState: boolean): Promise<string> {
  s.store.failing = () => true;
  const first = await open(s, {}, { backoff: { baseMs: 60_000, capMs: 60_000 }, closeGraceMs: 0 });
  await appendMany(first, 'orphan', count);
  const crashed = join(s.spoolDir, '..', 'crashed');
  await cp(s.spoolDir, crashed, {
    recursive: true,
    filter: (source) => withState || !source.includes('shipper'),
  });
  return crashed;
}

async function openAfterCrash(s: Setup, spoolDir: string): Promise<AuditRecorder> {
  const recorder = await AuditRecorder.open({
    spoolDir,
    identity: { cluster: 'test', pod, incarnation: 'inc-2' },
    store: s.store,
    settings: () => ({ batch: never, retentionMs: 1000 }),
    closeGraceMs: 0,
  });
  // Opened where a refusal was expected: closed all the same, so the failure ends the test.
  s.defer(() => recorder.close());
  return recorder;
}

test('a spool with unshipped records but no shipper state is refused, not guessed at', async (t) => {
  const s = await setup(t);
  const crashed = await crashedWithUncut(s, 2, false);
  await assert.rejects(openAfterCrash(s, crashed), AuditStateError);
});

test('one damaged digit in the shipper state fails its seal: the open is refused, naming the file', async (t) => {
  const s = await setup(t);
  const crashed = await crashedWithUncut(s, 5, true);
  const path = join(crashed, 'shipper', 'state.json');
  const text = await readFile(path, 'utf8');
  const damaged = text.replace(/(cutSeq\\?":)0/, '$15');
  assert.notEqual(damaged, text);
  await writeFile(path, damaged);
  await assert.rejects(openAfterCrash(s, crashed), (error: Error) => {
    assert.ok(error instanceof AuditStateError, String(error));
    assert.equal(
      error.message,
      `${path} fails its SHA-256 check: damaged since it was written; nothing is guessed`,
    );
    return true;
  });
});

test('a shipper state that would skip answered records is refused, even sealed', async (t) => {
  const s = await setup(t);
  const crashed = await crashedWithUncut(s, 5, true);
  const path = join(crashed, 'shipper', 'state.json');
  const sealed = JSON.parse(await readFile(path, 'utf8')) as { state: string };
  const state = sealed.state.replace(/("cutSeq":)0/, '$15');
  assert.notEqual(state, sealed.state);
  await writeFile(path, JSON.stringify({ sha256: sha256Hex(state), state }));
  await assert.rejects(
    openAfterCrash(s, crashed),
    (error: Error) =>
      error instanceof AuditStateError &&
      /\(cut at 5\) skips record 0 of .*inc-1 \(spool seq 0\), never shipped/.test(error.message),
  );
});

test('a state written before the seal opens, and is sealed by the open', async (t) => {
  const s = await setup(t);
  const first = await open(s, {});
  await appendMany(first, 'before', 2);
  await first.close();
  const path = join(s.spoolDir, 'shipper', 'state.json');
  await writeFile(path, (JSON.parse(await readFile(path, 'utf8')) as { state: string }).state);
  const next = await open(s, {}, { identity: { cluster: 'test', pod, incarnation: 'inc-2' } });
  assert.match(await readFile(path, 'utf8'), /^\{"sha256":"[0-9a-f]{64}","state":/);
  await next.close();
  assert.deepEqual(invalid(await verifyDir(s.evidenceDir)), []);
});

test('close gives up after its grace period and leaves everything for the next process', async (t) => {
  const s = await setup(t);
  s.store.failing = () => true;
  const logged: string[] = [];
  const first = await open(
    s,
    {},
    { closeGraceMs: 200, log: (line, level) => logged.push(`${level} ${line}`) },
  );
  await appendMany(first, 'late', 4);
  await first.close();
  assert.deepEqual(s.store.puts, []);
  // A deleted pod's spool goes with it: said as an error, with what is at stake, not as a promise.
  assert.deepEqual(
    logged.filter((line) => line.includes('grace period')),
    [
      `error audit: 4 records not shipped to scripted store within the grace period (records 0 to 3 of stream ${first.stream} among them): ` +
        'kept in the spool for the next process if only the container restarts, but lost if the pod itself is being deleted ' +
        '(the sidecar cannot tell which; see "When a part is down" in the operations guide)',
    ],
  );
  // Cutting and closing locally while the store is away end no outage.
  assert.deepEqual(
    logged.filter((line) => line.includes('resumed')),
    [],
  );
  assert.ok(first.stats().failures > 0);

  // The closing manifest was queued while the store was away: the next process uploads it.
  const next = await open(
    { ...s, store: new ScriptedStore(new DirEvidenceStore(s.evidenceDir)) },
    {},
    {
      identity: { cluster: 'test', pod, incarnation: 'inc-2' },
    },
  );
  await next.close();
  const result = await verifyDir(s.evidenceDir);
  assert.deepEqual(invalid(result), []);
  assert.equal(result.totals.records, 4);
  assert.deepEqual(
    result.streams.map((stream) => stream.closed),
    [true, true],
  );
});

/**
 * A stream of three records, closed, then what a refused write left in the
 * spool had it not been cut off: a record past the stream's last.
 */
async function closedWithRefusedRecord(s: Awaited<ReturnType<typeof setup>>): Promise<void> {
  const first = await open(s, {});
  await appendMany(first, 'shipped', 3);
  await first.close();
  const spool = await Spool.open({ dir: s.spoolDir });
  await spool.append(
    new RecordEncoder({ cluster: 'test', pod, incarnation: 'inc-1' }).encode(draft('refused'), 3),
  );
  await spool.close();
}

test('records found after their stream closed are dropped, said in the log, and hold no shipping up', async (t) => {
  const s = await setup(t);
  await closedWithRefusedRecord(s);

  const logged: string[] = [];
  const second = await open(
    s,
    {},
    {
      identity: { cluster: 'test', pod, incarnation: 'inc-2' },
      closeGraceMs: 2_000,
      log: (message) => logged.push(message),
    },
  );
  await appendMany(second, 'after', 2);
  await second.close();
  assert.equal(second.stats().recordsWaiting, 0);
  assert.ok(
    logged.some((message) =>
      /dropped records 3 to 3 of .*inc-1, found after its closing manifest/.test(message),
    ),
    logged.join('\n'),
  );
  const result = await verifyDir(s.evidenceDir);
  assert.deepEqual(invalid(result), []);
  assert.deepEqual(
    result.streams.map((stream) => [stream.records, stream.closed]),
    [
      [3, true],
      [2, true],
    ],
  );
});

test('records dropped after their stream closed, not yet released when the process stops, let the next one open', async (t) => {
  const s = await setup(t);
  await closedWithRefusedRecord(s);
  s.store.failing = () => true;
  // The drop comes while the outbox holds this process's genesis: nothing is released.
  const stopped = await open(
    s,
    {},
    { identity: { cluster: 'test', pod, incarnation: 'inc-2' }, closeGraceMs: 200 },
  );
  await stopped.close();
  assert.equal(stopped.stats().recordsWaiting, 1);

  s.store.failing = () => false;
  const next = await open(s, {}, { identity: { cluster: 'test', pod, incarnation: 'inc-3' } });
  await next.close();
  assert.equal(next.stats().recordsWaiting, 0);
  const result = await verifyDir(s.evidenceDir);
  assert.deepEqual(invalid(result), []);
  assert.deepEqual(
    result.streams.map((stream) => [stream.records, stream.closed]),
    [
      [3, true],
      [0, true],
      [0, true],
    ],
  );
});

test('records dropped after their stream closed count as waiting no longer, even when no record follows them', async (t) => {
  const s = await setup(t);
  await closedWithRefusedRecord(s);

  const idle = await open(s, {}, { identity: { cluster: 'test', pod, incarnation: 'inc-2' } });
  await eventually('the drop and the genesis shipped', () => idle.stats().recordsWaiting === 0);
  await idle.close();
  const logged: string[] = [];
  const third = await open(
    s,
    {},
    { identity: { cluster: 'test', pod, incarnation: 'inc-3' }, log: (message) => logged.push(message) },
  );
  assert.equal(third.stats().recordsWaiting, 0);
  assert.deepEqual(
    logged.filter((message) => message.includes('earlier processes')),
    [],
  );
  await third.close();
});

test('a close that ships every record but not its manifests in time says so, not "0 records"', async (t) => {
  const s = await setup(t);
  const logged: string[] = [];
  const recorder = await open(s, { maxRecords: 3 }, { closeGraceMs: 200, log: (line) => logged.push(line) });
  await appendMany(recorder, 'shipped', 3);
  await eventually('the batch shipped', () => recorder.stats().recordsWaiting === 0);
  s.store.failing = () => true;
  await recorder.close();
  assert.deepEqual(
    logged.filter((line) => line.includes('grace period')),
    [
      'audit: the last manifests (no records) not shipped to scripted store within the grace period: ' +
        'kept in the spool for the next process if only the container restarts, but lost if the pod itself is being deleted ' +
        '(the sidecar cannot tell which; see "When a part is down" in the operations guide)',
    ],
  );
});

test('a damaged shipper state is refused, not guessed at', async (t) => {
  const s = await setup(t);
  const first = await open(s, {});
  await first.close();
  await writeFile(join(s.spoolDir, 'shipper', 'state.json'), '{"version":1,"cutSeq":"x"}');
  await assert.rejects(
    AuditRecorder.open({
      spoolDir: s.spoolDir,
      identity: { cluster: 'test', pod, incarnation: 'inc-2' },
      store: s.store,
      settings: () => ({ batch: never, retentionMs: 1000 }),
      closeGraceMs: 0,
    }),
    AuditStateError,
  );
});

test('a spooled record damaged on disk is refused, not shipped, and stays in the spool', async (t) => {
  const s = await setup(t);
  let down = true;
  s.store.failing = () => down;
  const logged: string[] = [];
  const recorder = await open(s, { maxRecords: 6 }, { closeGraceMs: 200, log: (m) => logged.push(m) });
  await appendMany(recorder, 'kept', 5);
  // Damaged before the batch is due, so before the shipper reads it.
  await flipPayloadByte(s.spoolDir, 2);
  await appendMany(recorder, 'due', 1);

  down = false;
  await eventually('the damaged record refused', () => logged.some((m) => /fails its checksum/.test(m)));
  await eventually('a retry refused it again', () => recorder.stats().failures >= 2);
  assert.deepEqual(
    s.store.puts.filter((key) => !key.endsWith('/manifests/00000000000000000000.json')),
    [],
  );
  assert.equal(recorder.stats().recordsWaiting, 6);
  assert.equal(recorder.stats().shippedRecords, 0);
});

/** Flips a byte inside the payload of the spool's `index`th frame, leaving its checksum as it was. */
async function flipPayloadByte(spoolDir: string, index: number): Promise<void> {
  const [segment] = (await readdir(spoolDir)).filter((name) => name.endsWith('.seg'));
  const path = join(spoolDir, segment as string);
  const bytes = await readFile(path);
  let at = 0;
  for (let i = 0; i < index; i++) at += 8 + bytes.readUInt32LE(at);
  bytes[at + 20] = (bytes[at + 20] ?? 0) ^ 0x01;
  await writeFile(path, bytes);
}
