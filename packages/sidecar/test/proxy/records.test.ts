// Every request on record, whatever the outcome: a mixed run of good, refused
// and broken requests, some at once, counted against the records it left. A
// forwarded request leaves two parts; an auditor counts it once.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { call, type HttpAnswer, type SidecarFixture, startSidecarFixture } from '../fixtures/sidecar.ts';

const EMAIL = 'sam.smith@example.org';

/** Arrays of numbers and long base64 strings anywhere in a value: what a raw vector would look like. */
function vectorLike(value: unknown, path = ''): string[] {
  if (Array.isArray(value)) {
    if (value.length > 4 && value.every((item) => typeof item === 'number')) return [path];
    return value.flatMap((item, i) => vectorLike(item, `${path}[${i}]`));
  }
  if (typeof value === 'string') return /^[A-Za-z0-9+/]{200,}={0,2}$/.test(value) ? [path] : [];
  if (typeof value === 'object' && value !== null) {
    return Object.entries(value).flatMap(([key, item]) => vectorLike(item, `${path}.${key}`));
  }
  return [];
}

describe('every request on record', () => {
  let fixture: SidecarFixture;
  let token: string;
  const answers: HttpAnswer[] = [];
  const tokens: string[] = [];

  before(async () => {
    fixture = await startSidecarFixture({
      policy: {
        access: {
          rules: [
            { name: 'team', groups: ['ml-team'] },
            { name: 'no-private', action: 'deny', groups: ['ml-team'], models: ['private-*'] },
          ],
          allowRoutes: [{ method: 'GET', path: '/v1/models' }],
        },
        limits: { maxInputsPerRequest: 3, maxBytesPerRequest: 4096, vectorsPerMinute: 1000 },
        masking: {
          rules: [{ name: 'emails', detectors: ['email'], operator: 'hash', scopes: ['forward', 'audit'] }],
        },
        audit: { inputs: 'masked' },
      },
    });
    token = await fixture.token();
    tokens.push(token, await fixture.token({ aud: 'elsewhere' }));
  });
  after(() => fixture.close());

  /** `null` sends no token at all. */
  const openai = (body: unknown, bearer: string | null = token) =>
    call(`${fixture.url}/v1/embeddings`, body, bearer === null ? {} : { token: bearer });

  it('leaves exactly one record for each request of a mixed run', async () => {
    const run: (() => Promise<HttpAnswer>)[] = [
      () => openai({ model: 'm', input: `write to ${EMAIL}` }),
      () => openai({ model: 'm', input: ['a', 'b'], encoding_format: 'base64' }),
      () => openai({ model: 'm', input: 'x' }, null),
      () => openai({ model: 'm', input: 'x' }, tokens[1] ?? null),
      () => openai({ model: 'private-llm', input: 'x' }),
      () => openai({ model: 'm', input: ['1', '2', '3', '4'] }),
      () => openai({ model: 'm', input: 'y'.repeat(5000) }),
      () => openai('{not json'),
      () => openai({ model: 'm', input: 42 }),
      () => call(`${fixture.url}/v1/models`, undefined, { token }),
      () => call(`${fixture.url}/admin/secrets`, undefined, { token }),
      () => call(`${fixture.url}/embed`, { inputs: [`cc ${EMAIL}`] }, { token }),
      () =>
        call(`${fixture.url}/v2/embed`, { model: 'm', texts: ['z'], input_type: 'clustering' }, { token }),
      // A model name longer than any model's is refused, and recorded; a route
      // longer than a record holds is recorded cut short.
      () => openai({ model: 'm'.repeat(600), input: 'x' }),
      () => call(`${fixture.url}/${'p'.repeat(700)}`, undefined, { token }),
    ];
    // Half one after another, half at once: concurrency must not lose or merge records.
    for (const request of run.slice(0, 7)) answers.push(await request());
    answers.push(...(await Promise.all(run.slice(7).map((request) => request()))));

    assert.deepEqual(
      answers.map((a) => a.status),
      [200, 200, 401, 401, 403, 413, 413, 400, 400, 200, 404, 200, 200, 400, 404],
    );
    const records = fixture.records();
    assert.equal(records.length, run.length);
    // The five requests that reached the model left a first part each as well;
    // the stream's seqs run on without a gap across all of them.
    const written = fixture.sink.records();
    const forwarded = answers.filter((a) => a.status === 200).length;
    assert.equal(forwarded, 5);
    assert.equal(written.length, run.length + forwarded);
    assert.deepEqual(
      written.map((r) => r.seq),
      written.map((_, i) => i),
    );
    assert.equal(new Set(written.map((r) => r.id)).size, written.length);
    const firstParts = written.filter((r) => r.outcome === 'incomplete').map((r) => r.id);
    assert.deepEqual(
      written.flatMap((r) => r.completes ?? []).sort(),
      firstParts.sort(),
      'each first part is completed once',
    );
    const outcomes = records.map((r) => r.outcome).sort();
    assert.deepEqual(outcomes, [
      'allowed',
      'allowed',
      'allowed',
      'allowed',
      'allowed',
      'denied',
      'denied',
      'denied',
      'invalid',
      'invalid',
      'invalid',
      'too_large',
      'too_large',
      'unauthenticated',
      'unauthenticated',
    ]);
    assert.deepEqual(records.map((r) => r.status).sort(), answers.map((a) => a.status).sort());
  });

  it('cuts over-long fields short rather than losing the record', () => {
    const records = fixture.records();
    const longRoute = records.find((r) => r.route.startsWith('/pppp'));
    assert.ok(longRoute && longRoute.route.length <= 512);
    assert.equal(longRoute.outcome, 'denied');
  });

  it('never holds a raw vector, a token or a masked value', () => {
    for (const line of fixture.sink.lines) {
      assert.deepEqual(vectorLike(JSON.parse(line)), [], line.slice(0, 200));
      for (const bearer of tokens) {
        for (const part of bearer.split('.')) assert.ok(!line.includes(part), 'a token in a record');
      }
      assert.ok(!line.includes(EMAIL), 'a masked value in a record');
    }
    const digests = fixture.records().filter((r) => r.vectors);
    assert.ok(digests.length >= 4);
    for (const record of digests) assert.match(record.vectors?.digest ?? '', /^[0-9a-f]{64}$/);
  });

  it('counts every request in veil_requests by outcome', async () => {
    const metrics = await call(`${fixture.adminUrl}/metrics`);
    assert.equal(metrics.status, 200);
    const total = [...metrics.text.matchAll(/^veil_requests_total\{[^}]*\} (\d+)/gm)].reduce(
      (sum, match) => sum + Number(match[1]),
      0,
    );
    assert.equal(total, fixture.records().length);
  });

  it('times putting each request on record in veil_record_duration', async () => {
    const metrics = (await call(`${fixture.adminUrl}/metrics`)).text;
    const value = (name: string) =>
      Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(metrics)?.[1]);
    assert.equal(value('veil_record_duration_count'), fixture.records().length);
    assert.ok(value('veil_record_duration_sum') > 0);
    // Buckets fine enough to tell a millisecond from two.
    assert.match(metrics, /^veil_record_duration_bucket\{[^}]*le="1.5"\} \d+$/m);
  });
});
