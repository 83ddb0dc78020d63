// Masking proven where it must hold: the model never receives a value masked
// in the forward scope, the record never holds one masked in the audit scope,
// and the caller never reads one masked in a response field.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { compileMasking, type MaskingRule, maskingRuleSchema, vectorsDigest } from '@veil/core';
import {
  call,
  type SidecarFixture,
  type SidecarFixtureOptions,
  startSidecarFixture,
  testPolicy,
} from '../fixtures/sidecar.ts';

const EMAIL = 'jane.doe@example.com';
const SSN = '123-45-6789';
const CARD = '4111 1111 1111 1111';
const EMPLOYEE = 'EMP-004217';
const RAW = [EMAIL, SSN, CARD, EMPLOYEE];

const texts = [
  `Contact ${EMAIL} about the refund`,
  `SSN ${SSN} on file`,
  `paid with ${CARD} yesterday`,
  `badge ${EMPLOYEE} lost`,
];

const rule = (fields: Partial<MaskingRule> & Pick<MaskingRule, 'name' | 'scopes'>): MaskingRule =>
  maskingRuleSchema.parse({ operator: 'redact', ...fields });

const pii = (scopes: MaskingRule['scopes']) =>
  rule({
    name: 'pii',
    detectors: ['email', 'ssn', 'payment-card'],
    patterns: [{ name: 'employee-id', regex: 'EMP-[0-9]{6}' }],
    scopes,
  });

/** E-mail addresses masked in the texts a Cohere response echoes. */
const echoed = rule({
  name: 'echoed',
  detectors: ['email'],
  scopes: ['response'],
  responseFields: ['texts'],
});

/** What the masking engine makes of texts under rules: what the model must receive. */
function masked(rules: MaskingRule[], scope: 'forward' | 'audit'): string[] {
  // Redaction needs no key; one is given because the engine takes one.
  return compileMasking(rules, { hashKey: randomBytes(32) }).maskTexts(texts, scope, 'input').texts;
}

function assertNoRaw(where: string, text: string): void {
  for (const value of RAW) assert.ok(!text.includes(value), `${where} holds ${value}`);
}

/**
 * For the tests of the describe block it is called in: a sidecar in front of a
 * model that gives every call `answer`, started before them and closed after.
 */
function beforeCannedModel(answer: string, options: SidecarFixtureOptions): () => SidecarFixture {
  const model = createServer((_request, response) => {
    response.setHeader('content-type', 'application/json');
    response.end(answer);
  });
  let fixture: SidecarFixture | undefined;
  before(async () => {
    model.listen(0, '127.0.0.1');
    await once(model, 'listening');
    const { port } = model.address() as AddressInfo;
    fixture = await startSidecarFixture({ ...options, upstream: `http://127.0.0.1:${port}` });
  });
  after(async () => {
    await fixture?.close();
    model.close();
  });
  return () => {
    assert.ok(fixture, 'the sidecar started');
    return fixture;
  };
}

describe('masking through the proxy', () => {
  describe('a request of many inputs', () => {
    const count = 70_000;
    const mailAndSsn = rule({ name: 'pii', detectors: ['email', 'ssn'], scopes: ['forward', 'audit'] });
    let fixture: SidecarFixture;
    before(async () => {
      fixture = await startSidecarFixture({
        policy: {
          limits: {
            maxInputsPerRequest: count,
            maxBytesPerRequest: 4 * 1024 * 1024,
            vectorsPerMinute: count,
          },
          masking: { rules: [mailAndSsn] },
          audit: { inputs: 'masked' },
        },
      });
    });
    after(() => fixture.close());

    it('records more masking actions than a call takes arguments, and answers', async () => {
      const input = Array.from({ length: count }, (_, i) => `${i}@example.com ${SSN}`);
      const answer = await call(
        `${fixture.url}/v1/embeddings`,
        { model: 'm', input, dimensions: 2 },
        { token: await fixture.token() },
      );
      assert.equal(answer.status, 200, answer.text.slice(0, 200));
      const [record] = fixture.records();
      const forward = (record?.masking ?? []).filter((a) => a.scope === 'forward');
      assert.equal(forward.length, 2 * count);
      assertNoRaw('the upstream body', JSON.stringify(fixture.upstreamCalls.at(-1)?.body).slice(0, 1000));
    });
  });

  describe('forward scope', () => {
    let fixture: SidecarFixture;
    let token: string;
    before(async () => {
      fixture = await startSidecarFixture({ policy: { masking: { rules: [pii(['forward'])] } } });
      token = await fixture.token();
    });
    after(() => fixture.close());

    it('forwards exactly the masked body and never the raw values (OpenAI)', async () => {
      const answer = await call(`${fixture.url}/v1/embeddings`, { model: 'm', input: texts }, { token });
      assert.equal(answer.status, 200);
      const expected = masked([pii(['forward'])], 'forward');
      assert.deepEqual(
        fixture.upstreamCalls.map(({ path, body }) => ({ path, body })),
        [{ path: '/v1/embeddings', body: { model: 'm', input: expected } }],
      );
      assertNoRaw('the upstream body', JSON.stringify(fixture.upstreamCalls));
      for (const [i, text] of expected.entries()) assert.notEqual(text, texts[i], `input ${i} was masked`);
    });

    it('keeps the shape of every dialect: a string stays a string', async () => {
      const cases = [
        { path: '/embed', body: { inputs: texts[0] }, field: 'inputs' },
        { path: '/api/embeddings', body: { model: 'm', prompt: texts[1] }, field: 'prompt' },
        { path: '/api/embed', body: { model: 'm', input: texts[2] }, field: 'input' },
      ];
      for (const { path, body, field } of cases) {
        const answer = await call(`${fixture.url}${path}`, body, { token });
        assert.equal(answer.status, 200, path);
        const received = fixture.upstreamCalls.at(-1)?.body as Record<string, unknown>;
        assert.equal(typeof received[field], 'string', path);
        assertNoRaw(path, JSON.stringify(received));
      }
    });

    it('reads a percent-encoded path as the route it reached, and forwards to that route', async () => {
      const answer = await call(
        `${fixture.url}/api/embedding%73`,
        { model: 'm', prompt: texts[1] },
        { token },
      );
      assert.equal(answer.status, 200, answer.text);
      const last = fixture.upstreamCalls.at(-1);
      assert.equal(last?.path, '/api/embeddings');
      assert.equal(typeof (last?.body as Record<string, unknown>).prompt, 'string');
      assertNoRaw('the upstream body', JSON.stringify(last?.body));
    });

    it('refuses a field named like a known one in other case, which some servers would read', async () => {
      const calls = fixture.upstreamCalls.length;
      const answer = await call(
        `${fixture.url}/api/embed`,
        { model: 'm', input: 'hello', Input: texts[1] },
        { token },
      );
      assert.equal(answer.status, 400);
      assert.match(answer.text, /'Input' is not 'input'/);
      assert.equal(fixture.upstreamCalls.length, calls);
    });

    it('says in the record that the model saw masked text, never the value', () => {
      const record = fixture.records()[0];
      const actions = record?.masking ?? [];
      assert.ok(actions.length >= 4);
      assert.ok(actions.every((action) => action.scope === 'forward' && action.rule === 'pii'));
      assert.deepEqual(
        new Set(actions.map((action) => action.field)),
        new Set(['input[0]', 'input[1]', 'input[2]', 'input[3]']),
      );
      for (const line of fixture.sink.lines) assertNoRaw('a record', line);
    });

    it("masks OpenAI's `user` as the inputs, so the model never reads an address there", async () => {
      const answer = await call(
        `${fixture.url}/v1/embeddings`,
        { model: 'm', input: ['hello'], user: EMAIL },
        { token },
      );
      assert.equal(answer.status, 200, answer.text);
      assert.deepEqual(fixture.upstreamCalls.at(-1)?.body, { model: 'm', input: ['hello'], user: '[EMAIL]' });
      assert.deepEqual(
        fixture
          .records()
          .at(-1)
          ?.masking.map((action) => [action.scope, action.rule, action.field, action.count]),
        [['forward', 'pii', 'user', 1]],
      );
    });

    it('refuses token-array inputs it cannot inspect, without forwarding them', async () => {
      const calls = fixture.upstreamCalls.length;
      const answer = await call(
        `${fixture.url}/v1/embeddings`,
        { model: 'm', input: [[1, 2, 3]] },
        { token },
      );
      assert.equal(answer.status, 400);
      assert.match(answer.text, /token-array inputs cannot be masked/);
      assert.equal(fixture.upstreamCalls.length, calls);
    });
  });

  describe('a rule that removes a whole text', () => {
    let fixture: SidecarFixture;
    let token: string;
    const dropped = rule({
      name: 'dropped',
      detectors: ['email'],
      operator: 'drop',
      scopes: ['forward', 'audit'],
    });
    before(async () => {
      fixture = await startSidecarFixture({
        policy: { masking: { rules: [dropped] }, audit: { inputs: 'masked' } },
      });
      token = await fixture.token();
    });
    after(() => fixture.close());

    const cases = [
      {
        path: '/v1/embeddings',
        body: { model: 'm', input: ['hello', ` ${EMAIL}`] },
        error: {
          error: {
            message: 'input[1]: masking removed the whole text',
            type: 'invalid_request_error',
            param: 'input[1]',
            code: 'invalid_request',
          },
        },
      },
      {
        path: '/v2/embed',
        body: { model: 'm', texts: ['hello', ` ${EMAIL}`], input_type: 'search_query' },
        error: { message: 'texts[1]: masking removed the whole text' },
      },
      {
        path: '/embed',
        body: { inputs: ['hello', ` ${EMAIL}`] },
        error: { error: 'inputs[1]: masking removed the whole text', error_type: 'Validation' },
      },
      {
        path: '/api/embed',
        body: { model: 'm', input: ['hello', ` ${EMAIL}`] },
        error: { error: 'input[1]: masking removed the whole text' },
      },
      {
        path: '/api/embeddings',
        body: { model: 'm', prompt: EMAIL },
        error: { error: 'prompt: masking removed the whole text' },
        field: 'input[0]',
      },
      {
        path: '/v1/embeddings',
        body: { model: 'm', input: EMAIL },
        error: {
          error: {
            message: 'input: masking removed the whole text',
            type: 'invalid_request_error',
            param: 'input',
            code: 'invalid_request',
          },
        },
        field: 'input[0]',
      },
    ];
    for (const { path, body, error, field = 'input[1]' } of cases) {
      it(`refuses it on ${path} (${JSON.stringify(error)}) before the model embeds an empty text`, async () => {
        const calls = fixture.upstreamCalls.length;
        const answer = await call(`${fixture.url}${path}`, body, { token });
        assert.equal(answer.status, 400);
        assert.deepEqual(answer.json, error);
        assert.equal(fixture.upstreamCalls.length, calls, 'the model was not called');
        const record = fixture.records().at(-1);
        assert.equal(record?.outcome, 'invalid');
        assert.deepEqual(
          record?.masking.map((action) => [action.scope, action.rule, action.field, action.operator]),
          [['forward', 'dropped', field, 'drop']],
        );
        for (const line of fixture.sink.lines) assertNoRaw('a record', line);
      });
    }

    it("leaves out OpenAI's `user` when the rule removes all of it", async () => {
      const answer = await call(
        `${fixture.url}/v1/embeddings`,
        { model: 'm', input: 'hello', user: EMAIL },
        { token },
      );
      assert.equal(answer.status, 200, answer.text);
      assert.deepEqual(fixture.upstreamCalls.at(-1)?.body, { model: 'm', input: 'hello' });
      assert.deepEqual(
        fixture
          .records()
          .at(-1)
          ?.masking.map((action) => [action.scope, action.field, action.operator]),
        [['forward', 'user', 'drop']],
      );
    });

    it('forwards a text it only shortens', async () => {
      const answer = await call(`${fixture.url}/v1/embeddings`, { model: 'm', input: texts[0] }, { token });
      assert.equal(answer.status, 200, answer.text);
      assert.deepEqual(fixture.upstreamCalls.at(-1)?.body, {
        model: 'm',
        input: 'Contact  about the refund',
      });
    });
  });

  describe('audit scope', () => {
    let fixture: SidecarFixture;
    before(async () => {
      fixture = await startSidecarFixture({
        policy: { masking: { rules: [pii(['audit'])] }, audit: { inputs: 'masked' } },
      });
    });
    after(() => fixture.close());

    it('forwards the raw text but records only the masked text', async () => {
      const token = await fixture.token();
      const answer = await call(`${fixture.url}/v1/embeddings`, { model: 'm', input: texts }, { token });
      assert.equal(answer.status, 200);
      // Audit masking is for the record alone: the model gets what the caller sent.
      assert.deepEqual(fixture.upstreamCalls[0]?.body, { model: 'm', input: texts });
      const [record] = fixture.records();
      assert.deepEqual(
        record?.inputs,
        masked([pii(['audit'])], 'audit').map((text) => ({ masked: text })),
      );
      assert.ok(record?.masking.every((action) => action.scope === 'audit'));
      // Both parts of the record: the first, written before the model was called, too.
      for (const line of fixture.sink.lines) assertNoRaw('a record', line);
    });

    it('records a text too long for the record as its keyed digest, not as no record', async () => {
      const token = await fixture.token();
      const long = `${'lorem ipsum '.repeat(7000)} ${EMAIL}`;
      const answer = await call(
        `${fixture.url}/v1/embeddings`,
        { model: 'm', input: [long, 'short'] },
        { token },
      );
      assert.equal(answer.status, 200, answer.text);
      const record = fixture.records().at(-1);
      assert.match((record?.inputs?.[0] as { digest: string }).digest, /^hmac-sha256:[0-9a-f]{64}$/);
      assert.deepEqual(record?.inputs?.[1], { masked: 'short' });
      for (const line of fixture.sink.lines) assertNoRaw('a record', line);
    });
  });

  describe('response scope', () => {
    let fixture: SidecarFixture;
    before(async () => {
      fixture = await startSidecarFixture({ policy: { masking: { rules: [echoed] } } });
    });
    after(() => fixture.close());

    for (const path of ['/v2/embed', '/v1/embed']) {
      it(`masks the texts Cohere echoes on ${path}`, async () => {
        const token = await fixture.token();
        const sent = { model: 'embed-v4.0', texts: [texts[0], 'nothing here'], input_type: 'search_query' };
        const answer = await call(`${fixture.url}${path}`, sent, { token });
        assert.equal(answer.status, 200);
        assert.deepEqual(fixture.upstreamCalls.at(-1)?.body, sent, 'the model gets the raw text');
        const reply = answer.json as { texts: string[]; embeddings: unknown };
        assert.ok(!answer.text.includes(EMAIL));
        const engine = compileMasking([echoed], { hashKey: randomBytes(32) });
        const expected = engine.maskResponse({ texts: sent.texts }).body as { texts: string[] };
        assert.deepEqual(reply.texts, expected.texts);
        assert.notEqual(reply.texts[0], sent.texts[0]);
        const record = fixture.records().at(-1);
        assert.deepEqual(
          record?.masking.map((action) => [action.scope, action.field, action.count]),
          [['response', 'response.texts[0]', 1]],
        );
        assert.equal(record?.vectors?.count, 2);
      });
    }

    it('refuses a rule on the vectors, so base64 vectors reach the caller as the model made them', async () => {
      const onVectors = {
        name: 'numbers',
        patterns: [{ name: 'digits', regex: '[0-9]{3}' }],
        operator: 'redact',
        scopes: ['response'],
        responseFields: ['data'],
      };
      const spec = { ...testPolicy([fixture.issuer]), masking: { rules: [onVectors] } };
      const applied = await fixture.sidecar.store.apply('test', spec);
      assert.equal(applied.ok, false);
      assert.match(applied.ok ? '' : applied.reason, /responseFields\.0: "data" reaches vectors/);
      const token = await fixture.token();
      const answer = await call(
        `${fixture.url}/v1/embeddings`,
        { model: 'm', input: ['hello world', 'another text'], encoding_format: 'base64' },
        { token },
      );
      assert.equal(answer.status, 200, answer.text);
      const embeddings = (answer.json as { data: { embedding: string }[] }).data.map((item) => {
        const bytes = Buffer.from(item.embedding, 'base64');
        assert.equal(bytes.toString('base64'), item.embedding, 'the vector is plain base64');
        return Array.from({ length: bytes.length / 4 }, (_, i) => bytes.readFloatLE(i * 4));
      });
      const record = fixture.records().at(-1);
      assert.deepEqual(record?.masking, []);
      assert.equal(record?.vectors?.digest, vectorsDigest(embeddings), 'the caller got the vectors recorded');
    });
  });

  describe('from a model whose answer holds nothing a response rule names', () => {
    // A rule on Cohere's echoed texts names nothing in an OpenAI answer: the
    // model's bytes are passed on as they are, not written anew.
    const raw =
      '{"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [1.0, -0.0, 0.25]}], "model": "m"}';
    const sidecar = beforeCannedModel(raw, { policy: { masking: { rules: [echoed] } } });

    it('gets the bytes the model sent', async () => {
      const fixture = sidecar();
      const token = await fixture.token();
      const answer = await call(`${fixture.url}/v1/embeddings`, { model: 'm', input: ['hello'] }, { token });
      assert.equal(answer.status, 200, answer.text);
      assert.equal(answer.text, raw);
      assert.equal(fixture.records().at(-1)?.vectors?.digest, vectorsDigest([[1, -0, 0.25]]));
    });
  });

  describe('from a model whose answer holds a key twice', () => {
    // Veil judges the answer as JSON.parse reads it, the last value of a key:
    // a caller whose parser keeps the first must not read the one unjudged.
    const onModel = rule({
      name: 'model-name',
      detectors: ['email'],
      scopes: ['response'],
      responseFields: ['model'],
    });
    const sidecar = beforeCannedModel(
      '{"object":"list","data":[{"object":"embedding","index":0,"embedding":[1.0,-0.0,0.25]}],"model":"jane.doe@example.com","model":"m"}',
      { policy: { masking: { rules: [onModel] } } },
    );

    it('gets the answer Veil checked, with the digest of its vectors', async () => {
      const fixture = sidecar();
      const token = await fixture.token();
      const answer = await call(`${fixture.url}/v1/embeddings`, { model: 'm', input: ['hello'] }, { token });
      assert.equal(answer.status, 200, answer.text);
      assert.ok(!answer.text.includes(EMAIL), 'the first value of the repeated key is gone');
      assert.equal(answer.text.match(/"model"/g)?.length, 1);
      const reply = answer.json as { model: string; data: { embedding: number[] }[] };
      assert.equal(reply.model, 'm');
      const record = fixture.records().at(-1);
      assert.deepEqual(record?.masking, []);
      assert.equal(record?.vectors?.digest, vectorsDigest(reply.data.map((item) => item.embedding)));
    });
  });

  describe("Cohere's echoed texts", () => {
    const hashed = rule({ name: 'hashed', detectors: ['email'], operator: 'hash', scopes: ['forward'] });
    const sent = (path: string) => ({
      model: 'embed-v4.0',
      texts: [EMAIL, EMAIL.toUpperCase(), 'nothing here'],
      ...(path === '/v2/embed' && { input_type: 'search_query' }),
    });

    describe('under a forward rule alone', () => {
      let fixture: SidecarFixture;
      before(async () => {
        fixture = await startSidecarFixture({ policy: { masking: { rules: [hashed] } } });
      });
      after(() => fixture.close());

      for (const path of ['/v2/embed', '/v1/embed']) {
        it(`are the caller's own on ${path}, never the hash tokens the model embedded`, async () => {
          const token = await fixture.token();
          const answer = await call(`${fixture.url}${path}`, sent(path), { token });
          assert.equal(answer.status, 200, answer.text);
          const upstream = fixture.upstreamCalls.at(-1)?.body as { texts: string[] };
          assert.match(upstream.texts[0] ?? '', /^\[EMAIL:[0-9a-f]{16}\]$/);
          assert.deepEqual((answer.json as { texts: string[] }).texts, sent(path).texts);
          assert.ok(!answer.text.includes('[EMAIL'), 'no hash token in the answer');
          assert.equal(fixture.records().at(-1)?.vectors?.count, 3);
        });
      }
    });

    describe('from a model whose vectors hold -0', () => {
      // JSON.stringify writes -0 as 0, a float32 of other bytes: the answer the
      // sidecar writes anew, with the caller's texts, must match its record.
      const sidecar = beforeCannedModel(
        '{"id":"a","texts":["[EMAIL]"],"embeddings":{"float":[[1.0,-0.0,0.25]]},"meta":{}}',
        { api: 'cohere', policy: { masking: { rules: [hashed] } } },
      );

      it('records the digest of the vectors the caller gets', async () => {
        const fixture = sidecar();
        const token = await fixture.token();
        const body = { model: 'embed-v4.0', texts: [EMAIL], input_type: 'search_query' };
        const answer = await call(`${fixture.url}/v2/embed`, body, { token });
        assert.equal(answer.status, 200, answer.text);
        const reply = answer.json as { texts: string[]; embeddings: { float: number[][] } };
        assert.deepEqual(reply.texts, [EMAIL]);
        assert.equal(fixture.records().at(-1)?.vectors?.digest, vectorsDigest(reply.embeddings.float));
      });
    });

    describe('under a response rule on texts too', () => {
      let fixture: SidecarFixture;
      before(async () => {
        fixture = await startSidecarFixture({ policy: { masking: { rules: [hashed, echoed] } } });
      });
      after(() => fixture.close());

      it("masks the caller's texts by that rule", async () => {
        const token = await fixture.token();
        const answer = await call(`${fixture.url}/v2/embed`, sent('/v2/embed'), { token });
        assert.equal(answer.status, 200, answer.text);
        assert.deepEqual((answer.json as { texts: string[] }).texts, ['[EMAIL]', '[EMAIL]', 'nothing here']);
        assert.deepEqual(
          fixture
            .records()
            .at(-1)
            ?.masking.map((action) => [action.scope, action.rule, action.field]),
          [
            ['forward', 'hashed', 'input[0]'],
            ['forward', 'hashed', 'input[1]'],
            ['response', 'echoed', 'response.texts[0]'],
            ['response', 'echoed', 'response.texts[1]'],
          ],
        );
      });
    });
  });
});
