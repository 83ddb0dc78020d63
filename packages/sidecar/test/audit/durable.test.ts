import assert from 'node:assert/strict';
import { test } from 'node:test';
import { auditRecordSchema } from '@veil/core';
import { DurableSink } from '../../src/audit/durable.ts';
import { Spool, SpoolFullError } from '../../src/audit/spool.ts';
import { newIncarnation, newRecordId, RecordEncoder } from '../../src/audit/stream.ts';
import { draft, teardown, tempDir } from './helpers.ts';

const identity = {
  cluster: 'prod-eu',
  pod: { namespace: 'ml', name: 'embed-0', uid: '7c0e6a4e-1b2f-4f43-9d55-0f3b8e2a9c11' },
  incarnation: '20260101T000000000Z-0a1b2c3d',
};

async function records(spool: Spool, from = 0) {
  const entries = await spool.readFrom(from, 1_000, Number.MAX_SAFE_INTEGER);
  return entries.map((entry) => ({
    spoolSeq: entry.seq,
    ...auditRecordSchema.parse(JSON.parse(entry.bytes.toString())),
  }));
}

test("records carry core's stream id and their own seq, not the spool's", async (t) => {
  const defer = teardown(t);
  const spool = await Spool.open({ dir: await tempDir(defer) });
  defer(() => spool.close());
  // Lines of an earlier stream already in the spool.
  await spool.append('{"earlier":true}');
  await spool.append('{"earlier":true}');
  let durable = 0;
  const sink = new DurableSink({
    spool,
    encoder: new RecordEncoder(identity),
    nextSeq: 0,
    reserveBytes: 0,
    onDurable: () => {
      durable += 1;
    },
  });
  await Promise.all([sink.append(draft('a')), sink.append(draft('b')), sink.append(draft('c'))]);
  const written = await records(spool, 2);
  assert.deepEqual(
    written.map((r) => [r.spoolSeq, r.seq, r.model]),
    [
      [2, 0, 'a'],
      [3, 1, 'b'],
      [4, 2, 'c'],
    ],
  );
  assert.equal(written[0]?.stream, `prod-eu/ml/${identity.pod.uid}/${identity.incarnation}`);
  assert.deepEqual(written[0]?.pod, identity.pod);
  assert.equal(durable, 3);
});

test('the reserve keeps room for admitted requests; refusals and full spools take no seq', async (t) => {
  const defer = teardown(t);
  const spool = await Spool.open({ dir: await tempDir(defer), segmentBytes: 4096, capacityBytes: 16 * 1024 });
  defer(() => spool.close());
  const reserveBytes = 4096;
  const sink = new DurableSink({ spool, encoder: new RecordEncoder(identity), nextSeq: 0, reserveBytes });
  let appended = 0;
  while (sink.accepting()) {
    await sink.append(draft(`m${appended}`));
    appended += 1;
  }
  assert.ok(spool.room() <= reserveBytes && spool.room() > 0);
  assert.throws(() => sink.append(draft('refusal', 'unavailable')), SpoolFullError);
  // An admitted request's record goes into the reserve until the spool is truly full.
  const inReserve = appended;
  for (;;) {
    try {
      await sink.append(draft(`m${appended}`));
    } catch (error) {
      assert.ok(error instanceof SpoolFullError);
      break;
    }
    appended += 1;
  }
  assert.ok(appended > inReserve);
  assert.equal(sink.nextSeq, appended);
  const seqs = (await records(spool)).map((r) => r.seq);
  assert.deepEqual(
    seqs,
    Array.from({ length: appended }, (_, i) => i),
  );
});

test('a queued record has its seq at once and becomes durable with the next commit', async (t) => {
  const defer = teardown(t);
  const spool = await Spool.open({ dir: await tempDir(defer) });
  defer(() => spool.close());
  const sink = new DurableSink({ spool, encoder: new RecordEncoder(identity), nextSeq: 0, reserveBytes: 0 });
  const id = newRecordId();
  const first = sink.append({ ...draft('first', 'incomplete'), id, status: null });
  await sink.append({ ...draft('full'), completes: id }, 'queued');
  assert.equal(sink.nextSeq, 2);
  assert.equal(spool.stats().nextSeq, 0, 'resolved before any sync');
  await first;
  await sink.close();
  const written = await records(spool);
  assert.deepEqual(
    written.map((r) => [r.seq, r.model, r.outcome, r.completes]),
    [
      [0, 'first', 'incomplete', undefined],
      [1, 'full', 'allowed', id],
    ],
  );
  assert.equal(written[0]?.id, id);
});

test("the full record of a forwarded request may use the reserve; a refusal's may not", async (t) => {
  const defer = teardown(t);
  const spool = await Spool.open({ dir: await tempDir(defer), segmentBytes: 4096, capacityBytes: 16 * 1024 });
  defer(() => spool.close());
  const sink = new DurableSink({
    spool,
    encoder: new RecordEncoder(identity),
    nextSeq: 0,
    reserveBytes: 4096,
  });
  for (let i = 0; sink.accepting(); i++) await sink.append(draft(`m${i}`));
  assert.throws(() => sink.append(draft('refusal', 'unavailable')), SpoolFullError);
  // A forwarded request whose answer could not be used (say, a masking failure) still ends on record.
  await sink.append({ ...draft('failed late', 'unavailable'), completes: newRecordId() });
  assert.equal((await records(spool)).at(-1)?.model, 'failed late');
});

test('close takes no more records and waits for those in flight', async (t) => {
  const defer = teardown(t);
  const spool = await Spool.open({ dir: await tempDir(defer) });
  defer(() => spool.close());
  const sink = new DurableSink({ spool, encoder: new RecordEncoder(identity), nextSeq: 5, reserveBytes: 0 });
  const pending = sink.append(draft('in-flight'));
  await sink.close();
  assert.equal(spool.stats().nextSeq, 1, 'the in-flight record is durable once close resolves');
  await pending;
  assert.equal(sink.accepting(), false);
  assert.throws(() => sink.append(draft('after')), /closed/);
  assert.equal((await records(spool))[0]?.seq, 5);
});

test('incarnations are plain path segments that sort by start time', () => {
  const earlier = newIncarnation(new Date('2026-01-02T03:04:05.006Z'));
  const later = newIncarnation(new Date('2026-01-02T03:04:05.007Z'));
  assert.match(earlier, /^20260102T030405006Z-[0-9a-f]{8}$/);
  assert.ok(earlier < later);
  assert.notEqual(newIncarnation(), newIncarnation());
});
