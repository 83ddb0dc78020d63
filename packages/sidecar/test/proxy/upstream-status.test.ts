// The model's error answers, as the caller hears them: in the caller's own
// dialect, the model's faults and its refusals of Veil's call a 502.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { upstreamStatusRefusal } from '../../src/proxy/upstream-status.ts';
import { maxAnswerBytes } from '../../src/upstream.ts';
import { call, type SidecarFixture, startSidecarFixture } from '../fixtures/sidecar.ts';

describe('upstreamStatusRefusal', () => {
  it("keeps the statuses a model gives for the caller's own request, with a code of the same meaning", () => {
    const kept = [
      [400, 'invalid_request'],
      [404, 'not_found'],
      [413, 'too_large'],
      [422, 'invalid_request'],
      [429, 'rate_limited'],
    ] as const;
    for (const [status, code] of kept) {
      const refusal = upstreamStatusRefusal({ status, retryAfter: undefined });
      assert.deepEqual(
        [refusal.status, refusal.code, refusal.outcome, refusal.message],
        [status, code, 'upstream_error', `the model refused the request (HTTP ${status})`],
      );
    }
  });

  it("answers the model's refusal of Veil's own call, its failures and anything else 502", () => {
    for (const status of [401, 403]) {
      const refusal = upstreamStatusRefusal({ status, retryAfter: undefined });
      assert.deepEqual(
        [refusal.status, refusal.code, refusal.message],
        [502, 'upstream_error', `the model refused Veil's call (HTTP ${status})`],
      );
    }
    for (const status of [500, 503, 504, 424, 409, 302, 101]) {
      const refusal = upstreamStatusRefusal({ status, retryAfter: '5' });
      assert.deepEqual(
        [refusal.status, refusal.code, refusal.message, refusal.headers],
        [502, 'upstream_error', `the model failed (HTTP ${status})`, {}],
      );
    }
  });

  it("passes a 429's Retry-After on only in one of its two lawful forms", () => {
    const header = (retryAfter: string | undefined) =>
      upstreamStatusRefusal({ status: 429, retryAfter }).headers;
    assert.deepEqual(header('7'), { 'retry-after': '7' });
    assert.deepEqual(header('Wed, 21 Oct 2026 07:28:00 GMT'), {
      'retry-after': 'Wed, 21 Oct 2026 07:28:00 GMT',
    });
    for (const odd of [undefined, '', '-1', '1.5', 'soon', '7, 8', '12345678901']) {
      assert.deepEqual(header(odd), {}, String(odd));
    }
    assert.deepEqual(upstreamStatusRefusal({ status: 400, retryAfter: '7' }).headers, {});
  });
});

interface ScriptedAnswer {
  readonly status: number;
  readonly headers?: Record<string, string>;
  readonly body: string;
  /** After the body, a space every this many ms: the answer never ends. */
  readonly trickleMs?: number;
}

/** A model whose every answer is the one the test set last. */
async function startScriptedModel(): Promise<{
  url: string;
  set(answer: ScriptedAnswer): void;
  close(): Promise<void>;
}> {
  let answer: ScriptedAnswer = { status: 500, body: '' };
  const server: Server = createServer((request, response) => {
    request.resume();
    request.on('end', () => {
      response.writeHead(answer.status, answer.headers ?? {});
      if (answer.trickleMs === undefined) {
        response.end(answer.body);
        return;
      }
      response.write(answer.body);
      const drip = setInterval(() => response.write(' '), answer.trickleMs);
      response.on('close', () => clearInterval(drip));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    set: (next) => {
      answer = next;
    },
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}

describe("the model's error answers through the sidecar", () => {
  let model: Awaited<ReturnType<typeof startScriptedModel>>;
  let fixture: SidecarFixture;
  let token: string;

  before(async () => {
    model = await startScriptedModel();
    fixture = await startSidecarFixture({ upstream: model.url });
    token = await fixture.token();
  });
  after(async () => {
    await fixture?.close();
    await model?.close();
  });

  it("answers TEI's empty 404 to an Ollama caller 404 in Ollama's own error shape", async () => {
    model.set({ status: 404, body: '' });
    const answer = await call(`${fixture.url}/api/embed`, { model: 'm', input: 'x' }, { token });
    assert.equal(answer.status, 404);
    assert.match(String(answer.headers['content-type']), /^application\/json/);
    assert.deepEqual(answer.json, { error: 'the model refused the request (HTTP 404)' });
    assert.deepEqual(
      [fixture.records().at(-1)?.outcome, fixture.records().at(-1)?.status],
      ['upstream_error', 404],
    );
  });

  it("wraps a text/plain 500 for a TEI caller as TEI's own 502 body, never the model's text", async () => {
    model.set({ status: 500, headers: { 'content-type': 'text/plain' }, body: 'panic: secret internals' });
    const answer = await call(`${fixture.url}/embed`, { inputs: 'x' }, { token });
    assert.equal(answer.status, 502);
    assert.match(String(answer.headers['content-type']), /^application\/json/);
    assert.deepEqual(answer.json, { error: 'the model failed (HTTP 500)', error_type: 'Backend' });
    assert.doesNotMatch(answer.text, /secret internals/);
    const record = fixture.records().at(-1);
    assert.deepEqual(
      [record?.outcome, record?.status, record?.error],
      ['upstream_error', 502, 'the model failed (HTTP 500)'],
    );
  });

  it("answers a 401 for Veil's call 502 to a Cohere caller, who did authenticate", async () => {
    model.set({
      status: 401,
      headers: { 'content-type': 'application/json' },
      body: '{"message":"bad key"}',
    });
    const answer = await call(
      `${fixture.url}/v2/embed`,
      { model: 'm', texts: ['x'], input_type: 'search_query' },
      { token },
    );
    assert.equal(answer.status, 502);
    assert.deepEqual(answer.json, { message: "the model refused Veil's call (HTTP 401)" });
  });

  it("passes a 429 on with the model's Retry-After", async () => {
    model.set({ status: 429, headers: { 'retry-after': '3' }, body: 'slow down' });
    const answer = await call(`${fixture.url}/v1/embeddings`, { model: 'm', input: 'x' }, { token });
    assert.equal(answer.status, 429);
    assert.equal(answer.headers['retry-after'], '3');
    assert.equal((answer.json as { error: { type: string } }).error.type, 'rate_limit_error');
  });
});

describe('a model answer past its bounds through the sidecar', () => {
  let model: Awaited<ReturnType<typeof startScriptedModel>>;
  let fixture: SidecarFixture;
  let token: string;
  const WAIT = { timeout: 30_000 };

  before(async () => {
    model = await startScriptedModel();
    fixture = await startSidecarFixture({
      upstream: model.url,
      upstreamTimeoutMs: 500,
      policy: {
        access: {
          rules: [{ name: 'team', groups: ['ml-team'], models: ['*'] }],
          allowRoutes: [{ method: 'POST', path: '/v1/tokenize' }],
        },
      },
    });
    token = await fixture.token();
  });
  after(async () => {
    await fixture?.close();
    await model?.close();
  });

  function lastRecord(): [string | undefined, number | null | undefined, string | null | undefined] {
    const record = fixture.records().at(-1);
    return [record?.outcome, record?.status, record?.error];
  }

  it(
    'answers a model still sending when upstreamTimeoutMs is up 504 in dialect, on record, embedding or passthrough',
    WAIT,
    async () => {
      model.set({ status: 200, headers: { 'content-type': 'application/json' }, body: '[[', trickleMs: 50 });
      const tei = await call(`${fixture.url}/embed`, { inputs: 'x' }, { token });
      assert.equal(tei.status, 504, tei.text);
      assert.deepEqual(tei.json, { error: 'the model did not answer in time', error_type: 'Backend' });
      assert.deepEqual(lastRecord(), ['upstream_error', 504, 'the model did not answer in time']);
      const tokenize = await call(`${fixture.url}/v1/tokenize`, { prompt: 'x' }, { token });
      assert.equal(tokenize.status, 504, tokenize.text);
      assert.deepEqual(lastRecord(), ['upstream_error', 504, 'the model did not answer in time']);
    },
  );

  it(
    "answers an embedding answer larger than its inputs could need 502 in the caller's dialect, on record",
    WAIT,
    async () => {
      const vectors = JSON.stringify({
        object: 'list',
        data: [{ object: 'embedding', index: 0, embedding: [0.25, 0.5] }],
        model: 'm',
      });
      const answer = (padding: number) => ({
        status: 200,
        headers: { 'content-type': 'application/json' },
        body: vectors + ' '.repeat(padding),
      });
      model.set(answer(1024 * 1024));
      const within = await call(`${fixture.url}/v1/embeddings`, { model: 'm', input: 'x' }, { token });
      assert.equal(within.status, 200, 'an answer within the bound of one input is served');
      model.set(answer(3 * 1024 * 1024));
      const past = await call(`${fixture.url}/v1/embeddings`, { model: 'm', input: 'x' }, { token });
      assert.equal(past.status, 502, past.text);
      const message = (past.json as { error: { message: string; code: string } }).error;
      assert.equal(message.code, 'upstream_error');
      assert.match(message.message, /^the model's answer is larger than \d+ bytes$/);
      assert.deepEqual(lastRecord(), ['upstream_error', 502, message.message]);
    },
  );

  it('answers a passthrough answer larger than the sidecar holds 502, on record', WAIT, async () => {
    model.set({
      status: 200,
      headers: { 'content-type': 'text/plain' },
      body: 'x'.repeat(maxAnswerBytes + 1),
    });
    const tokenize = await call(`${fixture.url}/v1/tokenize`, { prompt: 'x' }, { token });
    assert.equal(tokenize.status, 502, tokenize.text.slice(0, 200));
    assert.deepEqual(lastRecord(), [
      'upstream_error',
      502,
      `the model's answer is larger than ${maxAnswerBytes} bytes`,
    ]);
  });
});
