// Child process: the least a proxy written in Node can do, as a reference for
// the sidecar's figures. A Node process spends much of a core on HTTP parsing,
// sockets and buffers before any of Veil's work begins, so "the sidecar reaches
// N req/s" says little until it stands next to what Node itself reaches on the
// same core with the same traffic. This is that floor: node:http in, the
// sidecar's own upstream client (an undici pool) out, the request and the
// answer read whole (as any proxy that inspects them must), and nothing else:
// no auth, no masking, no recording. Its upstream arrives in VEIL_BENCH_UPSTREAM.
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Upstream } from '../../packages/sidecar/src/upstream.ts';
import { serveAsChild } from './processes.ts';

export interface BareProxyReady {
  readonly url: string;
}

const upstreamUrl = process.env.VEIL_BENCH_UPSTREAM;
if (upstreamUrl === undefined) throw new Error('VEIL_BENCH_UPSTREAM is not set');
// The sidecar's own client and pool settings, so both differ only in what they do per request.
const upstream = new Upstream({ url: upstreamUrl });

const server = createServer(async (request, response) => {
  try {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const answer = await upstream.send(
      request.method === 'GET' ? 'GET' : 'POST',
      request.url ?? '/',
      request.method === 'GET' ? undefined : Buffer.concat(chunks),
      { 'content-type': request.headers['content-type'] ?? 'application/json' },
    );
    response.writeHead(answer.status, {
      'content-type': answer.contentType ?? 'application/json',
      'content-length': answer.body.length,
    });
    response.end(answer.body);
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
