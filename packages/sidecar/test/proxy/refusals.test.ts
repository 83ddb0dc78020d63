// Every way the proxy ends a request short of a good answer: size and rate
// limits, bad bodies, unknown routes, no policy, a model down or too slow.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { request } from 'undici';
import {
  call,
  closedPortUrl,
  type SidecarFixture,
  startSidecarFixture,
  startStallingServer,
} from '../fixtures/sidecar.ts';

const LIMIT = 2048;

/** A JSON body of about `total` bytes as a stream: sent chunked, with no Content-Length. */
function chunks(total: number, size: number): Readable {
  return Readable.from(
    (function* () {
      yield Buffer.from('{"model":"m","input":"');
      for (let sent = 0; sent < total; sent += size) yield Buffer.alloc(size, 'a');
      yield Buffer.from('"}');
    })(),
  );
}

describe('refusals', () => {
  let fixture: SidecarFixture;
  let token: string;

  before(async () => {
    fixture = await startSidecarFixture({
      policy: {
        limits: { maxBytesPerRequest: LIMIT, maxInputsPerRequest: 2, vectorsPerMinute: 3 },
        access: {
          rules: [
            { name: 'team', groups: ['ml-team'] },
            { name: 'not-mallory', action: 'deny', subjects: ['mallory'] },
          ],
          allowRoutes: [
            { method: 'GET', path: '/v1/models' },
            { method: 'POST', path: '/v1/tokenize' },
          ],
        },
      },
    });
    token = await fixture.token();
  });
  after(() => fixture.close());

  describe('request size', () => {
    it('answers a declared body over maxBytesPerRequest 413 without calling the model', async () => {
      const answer = await call(
        `${fixture.url}/v1/embeddings`,
        { model: 'm', input: 'a'.repeat(LIMIT) },
        { token },
      );
      assert.equal(answer.status, 413);
      assert.match(answer.text, /larger than 2048 bytes/);
      assert.equal(fixture.upstreamCalls.length, 0);
      assert.equal(fixture.records().at(-1)?.outcome, 'too_large');
    });

    it('stops reading a chunked body (no Content-Length) at the limit, 413 without calling the model', async () => {
      const response = await request(`${fixture.url}/v1/embeddings`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: chunks(64 * 1024, 1024),
      });
      const text = await response.body.text();
      assert.equal(response.statusCode, 413, text);
      assert.equal(fixture.upstreamCalls.length, 0);
      assert.equal(fixture.records().at(-1)?.outcome, 'too_large');
    });

    it('still serves a chunked body within the limit', async () => {
      const response = await request(`${fixture.url}/v1/embeddings`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: chunks(100, 50),
      });
      await response.body.dump();
      assert.equal(response.statusCode, 200);
      assert.equal(fixture.upstreamCalls.length, 1);
    });

    it('answers too many inputs 413', async () => {
      const answer = await call(
        `${fixture.url}/v1/embeddings`,
        { model: 'm', input: ['a', 'b', 'c'] },
        { token },
      );
      assert.equal(answer.status, 413);
      assert.equal((answer.json as { error: { code: string } }).error.code, 'too_large');
      assert.equal(fixture.upstreamCalls.length, 1);
    });
  });

  describe('bad bodies', () => {
    it('answers malformed JSON 400', async () => {
      const answer = await call(`${fixture.url}/v1/embeddings`, '{"model": "m", "input": ', { token });
      assert.equal(answer.status, 400);
      assert.deepEqual(answer.json, {
        error: {
          message: 'request body is not valid JSON',
          type: 'invalid_request_error',
          param: null,
          code: 'invalid_request',
        },
      });
      assert.equal(fixture.records().at(-1)?.outcome, 'invalid');
    });

    it('refuses a Content-Type that does not parse 400 in the route dialect, once on record, token or not', async () => {
      const garbage = { 'content-type': 'garbage' };
      const modelCalls = fixture.upstreamCalls.length;
      const sent = [
        { path: '/v1/embeddings', token, api: 'openai', subject: 'alice' },
        { path: '/v1/embeddings', token: undefined, api: 'openai', subject: undefined },
        { path: '/api/embed', token, api: 'ollama', subject: 'alice' },
        { path: '/v1/chat/completions', token, api: 'unknown', subject: 'alice' },
      ] as const;
      for (const { path, token: bearer, api } of sent) {
        const from = fixture.sink.lines.length;
        const answer = await call(
          `${fixture.url}${path}`,
          { model: 'm', input: 'x' },
          {
            headers: garbage,
            ...(bearer === undefined ? {} : { token: bearer }),
          },
        );
        assert.equal(answer.status, 400, answer.text);
        const message = /Content-Type cannot be parsed/;
        if (api === 'ollama') assert.match((answer.json as { error: string }).error, message);
        else assert.match((answer.json as { error: { message: string } }).error.message, message);
        assert.deepEqual(
          fixture.sink
            .records()
            .slice(from)
            .map((r) => [r.api, r.route, r.outcome, r.status, r.identity]),
          [[api, path, 'invalid', 400, null]],
          'refused before authentication, and recorded once',
        );
      }
      assert.equal(fixture.upstreamCalls.length, modelCalls);
    });

    it('refuses a compressed body 415 in dialect, on record, unread and unforwarded, embedding or passthrough', async () => {
      const from = fixture.records().length;
      const calls = fixture.upstreamCalls.length;
      const gzipped = gzipSync(JSON.stringify({ model: 'm', input: 'x' }));
      for (const path of ['/v1/embeddings', '/v1/tokenize']) {
        const answer = await request(`${fixture.url}${path}`, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${token}`,
            'content-type': 'application/json',
            'content-encoding': 'gzip',
          },
          body: gzipped,
        });
        assert.equal(answer.statusCode, 415, path);
        assert.equal(answer.headers['accept-encoding'], 'identity');
        assert.deepEqual(await answer.body.json(), {
          error: {
            message: 'compressed request bodies are not accepted: send the body without a Content-Encoding',
            type: 'invalid_request_error',
            param: null,
            code: 'invalid_request',
          },
        });
      }
      assert.deepEqual(
        fixture
          .records()
          .slice(from)
          .map((r) => [r.api, r.outcome, r.status, r.identity?.subject]),
        [
          ['openai', 'invalid', 415, 'alice'],
          ['passthrough', 'invalid', 415, 'alice'],
        ],
      );
      assert.equal(fixture.upstreamCalls.length, calls);
      // Identity is no compression: such a body is read as any other.
      const identity = await call(`${fixture.url}/v1/embeddings`, 'not json', {
        token,
        headers: { 'content-encoding': 'Identity' },
      });
      assert.equal(identity.status, 400);
      assert.match(identity.text, /not valid JSON/);
    });

    it('answers wrong types 400 naming the field', async () => {
      const answer = await call(`${fixture.url}/v1/embeddings`, { model: 7, input: 'x' }, { token });
      assert.equal(answer.status, 400);
      assert.equal((answer.json as { error: { param: string } }).error.param, 'model');
    });

    it('reads the body whatever its content type, or with none', async () => {
      const plain = await call(`${fixture.url}/v1/embeddings`, 'not json', {
        token,
        headers: { 'content-type': 'text/plain' },
      });
      assert.equal(plain.status, 400);
      assert.match(plain.text, /not valid JSON/);
      const untyped = await request(`${fixture.url}/v1/embeddings`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}` },
        body: JSON.stringify({ model: 'm', input: 'no content type' }),
      });
      await untyped.body.dump();
      assert.equal(untyped.statusCode, 200);
    });
  });

  describe('rate', () => {
    it('answers 429 with Retry-After once vectorsPerMinute are spent', async () => {
      const rated = await startSidecarFixture({ policy: { limits: { vectorsPerMinute: 3 } } });
      try {
        const bearer = await rated.token();
        const first = await call(
          `${rated.url}/api/embed`,
          { model: 'm', input: ['a', 'b', 'c'] },
          { token: bearer },
        );
        assert.equal(first.status, 200);
        const second = await call(`${rated.url}/api/embed`, { model: 'm', input: 'd' }, { token: bearer });
        assert.equal(second.status, 429);
        assert.deepEqual(Object.keys(second.json as object), ['error']);
        const retryAfter = Number(second.headers['retry-after']);
        // One vector refills in twenty seconds.
        assert.ok(retryAfter >= 1 && retryAfter <= 20, `retry-after ${retryAfter}`);
        // Another caller has a budget of its own.
        const other = await call(
          `${rated.url}/api/embed`,
          { model: 'm', input: 'e' },
          { token: await rated.token({ sub: 'bob' }) },
        );
        assert.equal(other.status, 200);
        // More inputs than a whole minute's budget can never pass: too large, not too early.
        const huge = await call(
          `${rated.url}/api/embed`,
          { model: 'm', input: ['1', '2', '3', '4'] },
          { token: await rated.token({ sub: 'carol' }) },
        );
        assert.equal(huge.status, 413);
        assert.equal(huge.headers['retry-after'], undefined);
        assert.deepEqual(huge.json, { error: '4 inputs exceed the budget of 3 vectors per minute' });
        assert.deepEqual(
          rated.records().map((r) => r.outcome),
          ['allowed', 'rate_limited', 'allowed', 'too_large'],
        );
      } finally {
        await rated.close();
      }
    });
  });

  describe('routes', () => {
    it('answers a route that is not an embedding API 404, recorded', async () => {
      const answer = await call(
        `${fixture.url}/v1/chat/completions`,
        { model: 'm', messages: [] },
        { token },
      );
      assert.equal(answer.status, 404);
      assert.match(answer.text, /not an embedding route/);
      const record = fixture.records().at(-1);
      assert.equal(record?.api, 'unknown');
      assert.equal(record?.route, '/v1/chat/completions');
      assert.equal(record?.outcome, 'denied');
    });

    it('refuses methods Fastify does not route as any other route: 404 in dialect, each on record', async () => {
      for (const method of ['PROPFIND', 'SEARCH', 'LOCK', 'PURGE', 'M-SEARCH', 'REPORT', 'MKCOL', 'BIND']) {
        const from = fixture.sink.lines.length;
        const answer = await call(`${fixture.url}/v1/files`, undefined, { method, token });
        assert.equal(answer.status, 404, method);
        assert.match(
          (answer.json as { error: { message: string } }).error.message,
          new RegExp(`^${method} /v1/files is not an embedding route`),
        );
        assert.deepEqual(
          fixture.sink
            .records()
            .slice(from)
            .map((r) => [r.api, r.route, r.outcome, r.status]),
          [['unknown', '/v1/files', 'denied', 404]],
        );
      }
    });

    it('answers an embedding route asked with another method 405, Allow: POST, in its dialect, on record', async () => {
      const routes = [
        [
          '/v1/embeddings',
          'openai',
          (json: unknown) => (json as { error: { message: string } }).error.message,
        ],
        ['/api/embed', 'ollama', (json: unknown) => (json as { error: string }).error],
        ['/v2/embed', 'cohere', (json: unknown) => (json as { message: string }).message],
      ] as const;
      // Fastify routes the POST of a percent-encoded path as the route it decodes to.
      const encoded = await request(`${fixture.url}/api/embedding%73`, {
        method: 'GET',
        headers: { authorization: `Bearer ${token}` },
      });
      assert.equal(encoded.statusCode, 405);
      assert.equal(
        ((await encoded.body.json()) as { error: string }).error,
        'GET /api/embeddings: this route takes only POST',
      );
      for (const [path, api, message] of routes) {
        for (const method of ['GET', 'PUT', 'DELETE', 'PROPFIND']) {
          const from = fixture.sink.lines.length;
          const response = await request(`${fixture.url}${path}`, {
            method,
            headers: { authorization: `Bearer ${token}` },
          });
          const text = await response.body.text();
          assert.equal(response.statusCode, 405, `${method} ${path}`);
          assert.equal(response.headers.allow, 'POST');
          assert.equal(message(JSON.parse(text)), `${method} ${path}: this route takes only POST`);
          assert.deepEqual(
            fixture.sink
              .records()
              .slice(from)
              .map((r) => [r.api, r.route, r.outcome, r.status]),
            [[api, path, 'invalid', 405]],
          );
        }
      }
    });

    it('refuses QUERY without a Content-Type as a method it does not serve, not as a failure', async () => {
      const response = await request(`${fixture.url}/v1/embeddings`, {
        method: 'QUERY',
        headers: { authorization: `Bearer ${token}` },
        body: '{}',
      });
      const text = await response.body.text();
      assert.equal(response.statusCode, 405, text);
      assert.match(text, /QUERY \/v1\/embeddings: this route takes only POST/);
      const record = fixture.records().at(-1);
      assert.deepEqual([record?.outcome, record?.status], ['invalid', 405]);
    });

    it('refuses a URL that does not decode in dialect, on record', async () => {
      const answer = await call(`${fixture.url}/v1/embeddings%zz`, { model: 'm', input: ['a'] }, { token });
      assert.equal(answer.status, 400);
      assert.match((answer.json as { error: { message: string } }).error.message, /URL cannot be decoded/);
      const record = fixture.records().at(-1);
      assert.deepEqual([record?.outcome, record?.status, record?.route], ['invalid', 400, '(undecodable)']);
    });

    it('with auto, answers other routes in the shape of the API whose routes they sit among', async () => {
      const shapes = [
        ['/api/tags', { error: 'GET /api/tags is not an embedding route this proxy serves' }],
        ['/v2/rerank', { message: 'GET /v2/rerank is not an embedding route this proxy serves' }],
        [
          '/embed_sparse',
          { error: 'GET /embed_sparse is not an embedding route this proxy serves', error_type: 'NotFound' },
        ],
      ] as const;
      for (const [path, shape] of shapes) {
        const answer = await call(`${fixture.url}${path}`, undefined, { token });
        assert.equal(answer.status, 404);
        assert.deepEqual(answer.json, shape);
      }
      const openai = await call(`${fixture.url}/v1/files`, undefined, { token });
      assert.equal((openai.json as { error: { type: string } }).error.type, 'invalid_request_error');
    });

    it('answers other routes in the shape of the API the proxy serves', async () => {
      const ollama = await startSidecarFixture({ api: 'ollama' });
      try {
        const answer = await call(`${ollama.url}/api/tags`, undefined, { token: await ollama.token() });
        assert.equal(answer.status, 404);
        assert.equal(typeof (answer.json as { error?: unknown }).error, 'string', answer.text);
      } finally {
        await ollama.close();
      }
    });

    it('passes an allow-listed route through, authenticated and recorded', async () => {
      const answer = await call(`${fixture.url}/v1/models`, undefined, { token });
      assert.equal(answer.status, 200);
      assert.equal((answer.json as { data: { id: string }[] }).data[0]?.id, 'veil-demo-embed');
      const record = fixture.records().at(-1);
      assert.equal(record?.api, 'passthrough');
      assert.equal(record?.outcome, 'allowed');
      assert.equal(record?.identity?.subject, 'alice');
    });

    it('holds an allow-listed route to the access rules: deny by default, and a deny rule wins', async () => {
      for (const claims of [{ sub: 'carol', groups: ['other-team'] }, { sub: 'mallory' }]) {
        const from = fixture.sink.lines.length;
        const answer = await call(`${fixture.url}/v1/models`, undefined, {
          token: await fixture.token(claims),
        });
        assert.equal(answer.status, 403, answer.text);
        assert.deepEqual((answer.json as { error: { code: string } }).error.code, 'forbidden');
        assert.deepEqual(
          fixture.sink
            .records()
            .slice(from)
            .map((r) => [r.api, r.outcome, r.status, r.identity?.subject, r.model]),
          [['passthrough', 'denied', 403, claims.sub, 'default']],
          'one record, and no first part: the model never saw it',
        );
      }
    });

    it('still wants a token on an allow-listed route', async () => {
      const answer = await call(`${fixture.url}/v1/models`);
      assert.equal(answer.status, 401);
      assert.equal(fixture.records().at(-1)?.outcome, 'unauthenticated');
    });

    it('forwards how the body is encoded and what answer is wanted, never the credentials', async () => {
      const heard: IncomingHttpHeaders[] = [];
      const model = createServer((req, res) => {
        heard.push(req.headers);
        req.resume();
        req.on('end', () => res.writeHead(200, { 'content-type': 'text/csv' }).end('a,b\n'));
      });
      model.listen(0, '127.0.0.1');
      await once(model, 'listening');
      const echo = await startSidecarFixture({
        upstream: `http://127.0.0.1:${(model.address() as AddressInfo).port}`,
        policy: {
          access: {
            rules: [{ name: 'team', groups: ['ml-team'] }],
            allowRoutes: [{ method: 'POST', path: '/v1/tokenize' }],
          },
        },
      });
      try {
        const response = await request(`${echo.url}/v1/tokenize`, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${await echo.token()}`,
            'content-type': 'text/plain',
            accept: 'text/csv',
            cookie: 'session=secret',
          },
          body: 'some text',
        });
        assert.equal(response.statusCode, 200);
        assert.equal(response.headers['content-type'], 'text/csv');
        assert.equal(await response.body.text(), 'a,b\n');
        assert.equal(heard[0]?.['content-type'], 'text/plain');
        assert.equal(heard[0]?.accept, 'text/csv');
        assert.equal(heard[0]?.authorization, undefined);
        assert.equal(heard[0]?.cookie, undefined);
      } finally {
        await echo.close();
        model.close();
        model.closeAllConnections();
      }
    });

    it('refuses an allow-listed route 503 while the spool is full, before authenticating or forwarding', async () => {
      const from = fixture.sink.lines.length;
      fixture.sink.full = true;
      try {
        const answer = await call(`${fixture.url}/v1/models`, undefined, { token });
        assert.equal(answer.status, 503);
        assert.equal(answer.headers['retry-after'], '5');
        assert.match(answer.text, /spool is full/);
        assert.equal((answer.json as { error: { code: string } }).error.code, 'unavailable');
      } finally {
        fixture.sink.full = false;
      }
      assert.deepEqual(
        fixture.sink
          .records()
          .slice(from)
          .map((r) => [r.api, r.outcome, r.status, r.identity]),
        [['passthrough', 'unavailable', 503, null]],
        'one record, and no first part: the model never saw it',
      );
    });

    it('allow-lists a method and path, not the path alone', async () => {
      const answer = await call(`${fixture.url}/v1/models`, {}, { token });
      assert.equal(answer.status, 404);
    });
  });

  describe('no policy', () => {
    it('answers 503 on every route and is not ready', async () => {
      const bare = await startSidecarFixture({ noPolicy: true });
      try {
        const bearer = await bare.token();
        const embed = await call(`${bare.url}/v1/embeddings`, { model: 'm', input: 'x' }, { token: bearer });
        assert.equal(embed.status, 503);
        assert.match(embed.text, /no valid policy/);
        const other = await call(`${bare.url}/v1/models`, undefined, { token: bearer });
        assert.equal(other.status, 503);
        const ready = await call(`${bare.adminUrl}/readyz`);
        assert.equal(ready.status, 503);
        assert.equal(bare.upstreamCalls.length, 0);
        const records = bare.records();
        assert.deepEqual(
          records.map((r) => [r.outcome, r.status, r.policy]),
          [
            ['unavailable', 503, null],
            ['unavailable', 503, null],
          ],
        );
      } finally {
        await bare.close();
      }
    });
  });

  describe('the model', () => {
    it('answers 502 in the caller dialect when the model is down', async () => {
      const down = await startSidecarFixture({ upstream: await closedPortUrl() });
      try {
        const bearer = await down.token();
        const tei = await call(`${down.url}/embed`, { inputs: 'x' }, { token: bearer });
        assert.equal(tei.status, 502);
        assert.equal((tei.json as { error_type: string }).error_type, 'Backend');
        const cohere = await call(
          `${down.url}/v2/embed`,
          { model: 'm', texts: ['x'], input_type: 'search_query' },
          { token: bearer },
        );
        assert.equal(cohere.status, 502);
        assert.match((cohere.json as { message: string }).message, /could not be reached/);
        assert.deepEqual(
          down.records().map((r) => [r.outcome, r.status]),
          [
            ['upstream_error', 502],
            ['upstream_error', 502],
          ],
        );
      } finally {
        await down.close();
      }
    });

    it('answers 504 when the model does not answer in time, embedding or passthrough', async () => {
      const stalling = await startStallingServer();
      const slow = await startSidecarFixture({
        upstream: stalling.url,
        upstreamTimeoutMs: 200,
        policy: {
          access: {
            rules: [{ name: 'team', groups: ['ml-team'] }],
            allowRoutes: [{ method: 'GET', path: '/v1/models' }],
          },
        },
      });
      try {
        const bearer = await slow.token();
        const ollama = await call(`${slow.url}/api/embed`, { model: 'm', input: 'x' }, { token: bearer });
        assert.equal(ollama.status, 504);
        assert.deepEqual(ollama.json, { error: 'the model did not answer in time' });
        const models = await call(`${slow.url}/v1/models`, undefined, { token: bearer });
        assert.equal(models.status, 504);
        assert.equal(stalling.received(), 2);
        assert.deepEqual(
          slow.records().map((r) => [r.outcome, r.status]),
          [
            ['upstream_error', 504],
            ['upstream_error', 504],
          ],
        );
      } finally {
        await slow.close();
        await stalling.close();
      }
    });
  });
});
