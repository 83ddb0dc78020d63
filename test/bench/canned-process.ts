// Child process: the canned upstream when nginx is missing. It answers every
// request with the same bytes, read once from VEIL_BENCH_CANNED_FILE, after
// reading the request body so keep-alive connections stay usable.
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serveAsChild } from './processes.ts';

export interface CannedReady {
  readonly url: string;
  readonly port: number;
}

const file = process.env.VEIL_BENCH_CANNED_FILE;
if (file === undefined) throw new Error('VEIL_BENCH_CANNED_FILE is not set');
const answer = await readFile(file);
const headers = { 'content-type': 'application/json', 'content-length': answer.length };

const server = createServer((request, response) => {
  request.resume();
  request.once('end', () => {
    response.writeHead(200, headers);
    response.end(answer);
  });
});
server.keepAliveTimeout = 65_000;
server.listen(0, '127.0.0.1');
await once(server, 'listening');
const { port } = server.address() as AddressInfo;

serveAsChild({ url: `http://127.0.0.1:${port}`, port } satisfies CannedReady, async () => {
  const closed = once(server, 'close');
  server.close();
  server.closeAllConnections();
  await closed;
});
