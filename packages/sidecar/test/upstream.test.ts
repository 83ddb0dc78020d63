import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type RequestListener } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { Upstream, UpstreamError, type UpstreamOptions } from '../src/upstream.ts';
import { closedPortUrl } from './fixtures/sidecar.ts';

/** Fails a test whose call never ends, rather than hanging the file. */
const WAIT = { timeout: 10_000 };

async function serve(handler: RequestListener): Promise<{ url: string; close: () => Promise<void> }> {
  const server = createServer(handler);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}

describe('upstream client', () => {
  const closing: (() => Promise<void>)[] = [];
  after(async () => {
    for (const close of closing.reverse()) await close();
  });

  async function upstreamFor(
    handler: RequestListener,
    options: Omit<UpstreamOptions, 'url'> = {},
  ): Promise<Upstream> {
    const server = await serve(handler);
    const upstream = new Upstream({ url: server.url, ...options });
    closing.push(server.close, () => upstream.close());
    return upstream;
  }

  it('returns an answer sent in many pieces whole, in order, with its status and content type', async () => {
    const pieces = Array.from({ length: 40 }, (_, i) => Buffer.alloc(4096, 97 + (i % 26)));
    const upstream = await upstreamFor(async (request, response) => {
      for await (const _ of request);
      response.writeHead(201, { 'content-type': 'application/x-pieces' });
      for (const piece of pieces) {
        response.write(piece);
        await new Promise((resolve) => setImmediate(resolve));
      }
      response.end();
    });
    const answer = await upstream.post('/v1/embeddings', '{}', { 'content-type': 'application/json' });
    assert.equal(answer.status, 201);
    assert.equal(answer.contentType, 'application/x-pieces');
    assert.deepEqual(answer.body, Buffer.concat(pieces));
  });

  it('skips an informational answer and returns the final one', async () => {
    const upstream = await upstreamFor((request, response) => {
      request.resume();
      response.writeEarlyHints({ link: '</model>; rel=preload' });
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end('{"ok":true}');
    });
    const answer = await upstream.send('GET', '/v1/models', undefined, {});
    assert.equal(answer.status, 200);
    assert.equal(answer.body.toString(), '{"ok":true}');
  });

  it('sends the method, path, headers and body it is given', async () => {
    let seen: { method?: string; url?: string; type?: string; body?: string } = {};
    const upstream = await upstreamFor(async (request, response) => {
      const chunks: Buffer[] = [];
      for await (const chunk of request) chunks.push(chunk as Buffer);
      seen = {
        method: request.method,
        url: request.url,
        type: request.headers['content-type'],
        body: Buffer.concat(chunks).toString(),
      };
      response.end();
    });
    const answer = await upstream.send('PUT', '/api/x?y=1', Buffer.from('{"a":1}'), {
      'content-type': 'application/json',
    });
    assert.deepEqual(seen, { method: 'PUT', url: '/api/x?y=1', type: 'application/json', body: '{"a":1}' });
    assert.equal(answer.status, 200);
    assert.equal(answer.body.length, 0);
  });

  it('reports a model that stops answering mid-body as a timeout, and one that is gone as unreachable', async () => {
    const stalled = await upstreamFor(
      (request, response) => {
        request.resume();
        response.writeHead(200, { 'content-type': 'application/json' });
        response.write('{"data":[');
      },
      { timeoutMs: 200 },
    );
    await assert.rejects(stalled.post('/v1/embeddings', '{}', {}), (error: unknown) => {
      assert.ok(error instanceof UpstreamError);
      assert.equal(error.kind, 'timeout');
      return true;
    });

    const unreachable = new Upstream({ url: await closedPortUrl() });
    closing.push(() => unreachable.close());
    await assert.rejects(unreachable.post('/v1/embeddings', '{}', {}), (error: unknown) => {
      assert.ok(error instanceof UpstreamError);
      assert.equal(error.kind, 'unreachable');
      assert.match(error.message, /could not be reached \(ECONNREFUSED\)/);
      return true;
    });
  });

  it(
    "gives up on a model that keeps sending a little at a time once the call's time is up",
    WAIT,
    async () => {
      const trickling = await upstreamFor(
        (request, response) => {
          request.resume();
          response.writeHead(200, { 'content-type': 'application/json' });
          const drip = setInterval(() => response.write(' '), 20);
          response.on('close', () => clearInterval(drip));
        },
        { timeoutMs: 300 },
      );
      await assert.rejects(trickling.post('/v1/embeddings', '{}', {}), (error: unknown) => {
        assert.ok(error instanceof UpstreamError);
        assert.deepEqual([error.kind, error.message], ['timeout', 'the model did not answer in time']);
        return true;
      });
    },
  );

  it(
    'stops reading an answer past its bound, fails the call as too large and drops the connection',
    WAIT,
    async () => {
      let dropped: Promise<unknown> | undefined;
      const upstream = await upstreamFor((request, response) => {
        request.resume();
        dropped = once(response, 'close');
        response.writeHead(200, { 'content-type': 'application/json' });
        // Four times the bound, and then the model would go on as long as it is let.
        const piece = Buffer.alloc(64 * 1024, 32);
        const more = () => {
          while (!response.destroyed && response.write(piece));
        };
        response.on('drain', more);
        more();
      });
      await assert.rejects(
        upstream.post('/v1/embeddings', '{}', {}, { maxBytes: 256 * 1024 }),
        (error: unknown) => {
          assert.ok(error instanceof UpstreamError);
          assert.deepEqual(
            [error.kind, error.message],
            ['too_large', "the model's answer is larger than 262144 bytes"],
          );
          return true;
        },
      );
      await dropped;
    },
  );

  it('calls a call off when its signal aborts: the model sees its connection closed', WAIT, async () => {
    let received!: () => void;
    const arrived = new Promise<void>((resolve) => {
      received = resolve;
    });
    let dropped: Promise<unknown> | undefined;
    const upstream = await upstreamFor((request) => {
      request.resume();
      dropped = once(request.socket, 'close');
      received();
    });
    const callerGone = new AbortController();
    const answer = upstream.post('/v1/embeddings', '{}', {}, { signal: callerGone.signal });
    await arrived;
    callerGone.abort();
    await assert.rejects(answer, (error: unknown) => {
      assert.ok(error instanceof UpstreamError);
      assert.deepEqual(
        [error.kind, error.message],
        ['cancelled', 'the caller went away before the model answered'],
      );
      return true;
    });
    await dropped;
    await assert.rejects(
      upstream.post('/v1/embeddings', '{}', {}, { signal: callerGone.signal }),
      /went away/,
    );
  });

  it('refuses a call once closed with the same error, not by throwing', async () => {
    const server = await serve((request, response) => {
      request.resume();
      response.end();
    });
    closing.push(server.close);
    const upstream = new Upstream({ url: server.url });
    await upstream.close();
    await assert.rejects(upstream.post('/v1/embeddings', '{}', {}), UpstreamError);
  });
});
