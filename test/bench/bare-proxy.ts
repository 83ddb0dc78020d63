// Child process: the least a proxy written in Node can do, as a reference for
// the sidecar's figures. A Node process spends much of a core on HTTP parsing,
// sockets and buffers before any of Veil's work begins, so "the sidecar reaches
// N req/s" says little until it stands next to what Node itself reaches on the
// same core with the same traffic. This is that floor: node:http in, an undici
// pool out, the request and the answer read whole (as any proxy that inspects
// them must), and nothing else: no auth, no masking, no recording. Its upstream
// arrives in VEIL_BENCH_UPSTREAM.
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool } from 'undici';
import { serveAsChild } from './processes.ts';

export interface BareProxyReady {
  readonly url: string;
}

const upstreamUrl = process.env.VEIL_BENCH_UPSTREAM;
if (upstreamUrl === undefined) throw new Error('VEIL_BENCH_UPSTREAM is not set');
// The sidecar's own upstream pool settings, so both differ only in what they do per request.
const upstream = new Pool(upstreamUrl, { connections: 64, pipelining: 1, keepAliveTimeout: 30_000 });

const server = createServer(async (request, response) => {
  try {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const answer = await upstream.request({
      method: request.method === 'GET' ? 'GET' : 'POST',
      path: request.url ?? '/',
      headers: { 'content-type': request.headers['content-type'] ?? 'application/json' },
      body: request.method === 'GET' ? undefined : Buffer.concat(chunks),
    });
    const body = Buffer.from(await answer.body.arrayBuffer());
    response.writeHead(answer.statusCode, {
      'content-type': String(answer.headers['content-type'] ?? 'application/json'),
      'content-length': body.length,
    });
    response.end(body);
  } catch (error) {
    if (!response.headersSent) response.writeHead(502, { 'content-type': 'text/plain' });
    response.end(String((error as Error).message));
  }
});
// Longer than the load generators' idle timeout, as in the sidecar.
server.keepAliveTimeout = 65_000;
server.listen(0, '127.0.0.1');
await once(server, 'listening');
const { port } = server.address() as AddressInfo;

serveAsChild({ url: `http://127.0.0.1:${port}` } satisfies BareProxyReady, async () => {
  const closed = once(server, 'close');
  server.close();
  server.closeAllConnections();
  await closed;
  await upstream.close();
});
