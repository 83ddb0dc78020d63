// A forwarded request is recorded in two parts: a first part appended as the
// request goes to the model and made durable while the model works, then the
// full record naming it. A request refused before forwarding keeps one record.
// Over real HTTP, with an in-memory sink for the order of things and a real
// spool and local evidence store for what a verifier makes of it.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type AuditRecord, effectiveRecords } from '@veil/core';
import type { AppendUntil, AuditDraft } from '../../src/audit/sink.ts';
import { sidecarConfigSchema } from '../../src/config.ts';
import { startDemoModel } from '../../src/demo/model.ts';
import { type RunningSidecar, startSidecar } from '../../src/sidecar.ts';
import { eventually, verifyDir } from '../audit/helpers.ts';
import { startTestIssuer, type TestIssuer } from '../fixtures/issuer.ts';
import {
  AUDIENCE,
  call,
  MemorySink,
  POD_UID,
  type SidecarFixture,
  startSidecarFixture,
  startStallingServer,
  TEAM,
  testPolicy,
} from '../fixtures/sidecar.ts';

/** A disk slow to sync: while stalled, a first part becomes durable only on `sync()`. */
class SlowSyncSink extends MemorySink {
  #synced: Promise<void> = Promise.resolve();
  #sync: () => void = () => undefined;

  // Not async: a record the spool refuses must still be refused at once.
  override append(draft: AuditDraft, until?: AppendUntil): Promise<void> {
    const taken = super.append(draft, until);
    return draft.outcome === 'incomplete' ? taken.then(() => this.#synced) : taken;
  }

  stall(): void {
    this.#synced = new Promise((resolve) => {
      this.#sync = resolve;
    });
  }

  sync(): void {
    this.#sync();
  }
}

const body = (model: string) => ({ model, input: ['a text for the model'] });

describe('records of forwarded requests', () => {
  let fixture: SidecarFixture;
  let sink: SlowSyncSink;
  let token: string;

  before(async () => {
    sink = new SlowSyncSink();
    fixture = await startSidecarFixture({
      sink,
      policy: {
        access: { rules: [{ name: 'team', groups: [TEAM], models: ['open-*'] }] },
        masking: {
          rules: [{ name: 'emails', detectors: ['email'], operator: 'redact', scopes: ['forward'] }],
        },
        audit: { inputs: 'masked' },
      },
    });
    token = await fixture.token();
  });
  after(() => fixture.close());

  const embed = (model: string) => call(`${fixture.url}/v1/embeddings`, body(model), { token });

  it('leaves a first part before the model is called, then the full record naming it', async () => {
    const from = sink.lines.length;
    const answer = await call(
      `${fixture.url}/v1/embeddings`,
      { model: 'open-a', input: ['mail sam@example.org'] },
      { token },
    );
    assert.equal(answer.status, 200);
    assert.equal(fixture.upstreamCalls.at(-1)?.linesWritten, from + 1, 'the first part came first');
    const [first, full, ...more] = sink.records().slice(from);
    assert.deepEqual(more, []);
    assert.ok(first && full);
    assert.equal(full.seq, first.seq + 1);
    assert.equal(full.completes, first.id);
    assert.equal(first.completes, undefined);
    assert.deepEqual([first.kind, first.outcome, first.status], ['request', 'incomplete', null]);
    assert.deepEqual([full.kind, full.outcome, full.status], ['request', 'allowed', 200]);
    // Everything known before the model answered is in the first part already.
    const known = (r: AuditRecord) => [r.identity, r.policy, r.api, r.route, r.model, r.inputCount, r.inputs];
    assert.deepEqual(known(first), known(full));
    assert.deepEqual(first.masking, full.masking);
    assert.equal(first.masking[0]?.detector, 'email');
    assert.equal(first.vectors, undefined);
    assert.equal(full.vectors?.count, 1);
    assert.equal(first.latency.upstreamMs, undefined);
    assert.ok((full.latency.upstreamMs ?? -1) >= 0);
    for (const ms of [...Object.values(first.latency), ...Object.values(full.latency)]) {
      assert.equal(Math.round(ms * 1000) / 1000, ms, 'latencies are recorded to the microsecond');
    }
    assert.deepEqual(fixture.records().slice(-1), [full], 'counted once');
  });

  it('leaves one record for a request refused before forwarding', async () => {
    const from = sink.lines.length;
    const calls = fixture.upstreamCalls.length;
    const denied = await embed('closed-b');
    const unauthenticated = await call(`${fixture.url}/v1/embeddings`, body('open-c'));
    assert.deepEqual([denied.status, unauthenticated.status], [403, 401]);
    assert.equal(fixture.upstreamCalls.length, calls);
    assert.deepEqual(
      sink
        .records()
        .slice(from)
        .map((r) => [r.outcome, r.status, r.completes]),
      [
        ['denied', 403, undefined],
        ['unauthenticated', 401, undefined],
      ],
    );
  });

  it('calls the model while the first part syncs, and answers only once it is durable', async () => {
    const from = sink.lines.length;
    const calls = fixture.upstreamCalls.length;
    sink.stall();
    let answered = false;
    const answer = embed('open-d').then((a) => {
      answered = true;
      return a;
    });
    await eventually('the model to get the request', () => fixture.upstreamCalls.length > calls);
    await sleep(100);
    assert.equal(answered, false, 'no answer while the first part is not durable');
    assert.equal(sink.lines.length, from + 1, 'the full record waits for the first part too');
    sink.sync();
    assert.equal((await answer).status, 200);
    assert.deepEqual(
      sink
        .records()
        .slice(from)
        .map((r) => r.outcome),
      ['incomplete', 'allowed'],
    );
  });

  it('gives the full record the time its first part took to become durable; a single record has none', async () => {
    const from = sink.lines.length;
    const calls = fixture.upstreamCalls.length;
    sink.stall();
    const answer = embed('open-h');
    await eventually('the model to get the request', () => fixture.upstreamCalls.length > calls);
    await sleep(50);
    sink.sync();
    assert.equal((await answer).status, 200);
    assert.equal((await embed('closed-i')).status, 403);
    const [first, full, refused, ...more] = sink.records().slice(from);
    assert.deepEqual(more, []);
    assert.equal(first?.latency.spoolMs, undefined);
    const spoolMs = full?.latency.spoolMs ?? -1;
    assert.ok(spoolMs >= 45, `the first part was durable only after the sync: ${spoolMs} ms`);
    assert.equal(Math.round(spoolMs * 1000) / 1000, spoolMs, 'to the microsecond');
    assert.deepEqual([refused?.outcome, refused?.latency.spoolMs], ['denied', undefined]);
  });

  it('answers 503 when the full record cannot be appended, leaving the request incomplete', async () => {
    const from = sink.lines.length;
    sink.failWhen = (draft) => draft.completes !== undefined;
    try {
      const answer = await embed('open-e');
      assert.equal(answer.status, 503);
      assert.match(answer.text, /could not be recorded/);
    } finally {
      sink.failWhen = undefined;
    }
    const written = sink.records().slice(from);
    assert.deepEqual(
      written.map((r) => [r.model, r.outcome]),
      [['open-e', 'incomplete']],
    );
    assert.deepEqual(fixture.records().at(-1), written[0], 'an incomplete request, not a lost one');
  });

  it('does not forward a request whose first part the spool refuses at once', async () => {
    const from = sink.lines.length;
    const calls = fixture.upstreamCalls.length;
    sink.refuseWhen = (draft) => draft.outcome === 'incomplete';
    try {
      const answer = await embed('open-g');
      assert.equal(answer.status, 503);
      assert.match(JSON.stringify(answer.json), /could not be recorded; it was not forwarded/);
    } finally {
      sink.refuseWhen = undefined;
    }
    assert.equal(fixture.upstreamCalls.length, calls, 'the model never saw it');
    const written = sink.records().slice(from);
    assert.deepEqual(
      written.map((r) => [r.model, r.outcome, r.status]),
      [['open-g', 'unavailable', 503]],
    );
  });

  it('answers 503 when the first part cannot be written, and writes no full record', async () => {
    const from = sink.lines.length;
    sink.failWhen = (draft) => draft.outcome === 'incomplete';
    try {
      const answer = await embed('open-f');
      assert.equal(answer.status, 503);
    } finally {
      sink.failWhen = undefined;
    }
    assert.equal(sink.lines.length, from);
  });
});

describe('forwarded requests through the real spool', () => {
  let issuer: TestIssuer;
  let dir: string;

  before(async () => {
    issuer = await startTestIssuer();
    dir = await mkdtemp(join(tmpdir(), 'veil-parts-'));
  });
  after(async () => {
    await issuer.stop();
    await rm(dir, { recursive: true, force: true });
  });

  async function recordedSidecar(name: string, upstream: string): Promise<RunningSidecar> {
    const sidecar = await startSidecar(
      sidecarConfigSchema.parse({
        upstream,
        api: 'auto',
        host: '127.0.0.1',
        proxyPort: 0,
        adminHost: '127.0.0.1',
        adminPort: 0,
        stateDir: join(dir, name, 'policy'),
        auditDir: join(dir, name, 'evidence'),
        spoolDir: join(dir, name, 'spool'),
        upstreamTimeoutMs: 30_000,
        pod: { namespace: 'test', name: 'embed-0', uid: POD_UID },
      }),
      { log: () => undefined },
    );
    const policy = testPolicy([issuer], { access: { rules: [{ name: 'team', groups: [TEAM] }] } });
    const applied = await sidecar.store.apply('test', policy);
    assert.ok(applied.ok);
    return sidecar;
  }

  const token = () => issuer.mint({ sub: 'alice', aud: AUDIENCE, groups: [TEAM] });

  it('verifies clean, each request counted once, seqs contiguous', async () => {
    const model = await startDemoModel();
    const sidecar = await recordedSidecar('clean', model.url);
    try {
      const bearer = await token();
      const answers = await Promise.all([
        call(`${sidecar.url}/v1/embeddings`, body('m-1'), { token: bearer }),
        call(`${sidecar.url}/v1/embeddings`, body('m-2'), { token: bearer }),
        call(`${sidecar.url}/v1/embeddings`, body('m-3')),
      ]);
      assert.deepEqual(
        answers.map((a) => a.status),
        [200, 200, 401],
      );
    } finally {
      await sidecar.close();
      await model.close();
    }
    const result = await verifyDir(join(dir, 'clean', 'evidence'));
    assert.deepEqual(
      result.findings.map((f) => `${f.level} ${f.code}`),
      ['WARN not-worm'],
    );
    assert.deepEqual([result.totals.records, result.totals.requests, result.totals.incomplete], [5, 3, 0]);
    assert.deepEqual(
      result.records.map((r) => r.seq),
      [0, 1, 2, 3, 4],
    );
    assert.deepEqual(
      effectiveRecords(result.records)
        .map((r) => `${r.model} ${r.outcome}`)
        .sort(),
      ['m-1 allowed', 'm-2 allowed', 'null unauthenticated'],
    );
  });

  it('leaves an incomplete request, which verify warns about, when recording stops mid-call', async () => {
    const stalling = await startStallingServer();
    const sidecar = await recordedSidecar('stopped', stalling.url);
    try {
      const answer = call(`${sidecar.url}/v1/embeddings`, body('cut-off'), { token: await token() });
      try {
        await eventually('the model to get the request', () => stalling.received() === 1);
        // Recording stops with the first part on disk, as in a crash: the
        // outcome never makes it, and the caller is never answered 200.
        await sidecar.sink.close();
      } finally {
        await stalling.close();
      }
      assert.equal((await answer).status, 503);
    } finally {
      await sidecar.close();
    }
    const result = await verifyDir(join(dir, 'stopped', 'evidence'));
    assert.deepEqual(
      result.findings.map((f) => `${f.level} ${f.code}`),
      ['WARN not-worm', 'WARN incomplete-record'],
    );
    assert.deepEqual([result.totals.records, result.totals.requests, result.totals.incomplete], [1, 1, 1]);
    assert.deepEqual(
      result.records.map((r) => [r.model, r.kind, r.outcome, r.status]),
      [['cut-off', 'request', 'incomplete', null]],
    );
  });
});
