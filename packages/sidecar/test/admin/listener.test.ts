// The admin port's first-byte switch between plain HTTP and TLS: once it has
// handed a connection on, nothing of its own stays on the socket.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, request } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { test } from 'node:test';
import { acceptTls } from '../../src/admin/listener.ts';

test("a plain connection handed to HTTP keeps only HTTP's own timeout handling", async () => {
  const server = createServer((_request, response) => response.end('ok'));
  acceptTls(server, () => undefined);
  const sockets: Socket[] = [];
  server.on('connection', (socket: Socket) => sockets.push(socket));
  // What a bare HTTP server leaves on its sockets, to compare with.
  const bare = createServer((_request, response) => response.end('ok'));
  const bareSockets: Socket[] = [];
  bare.on('connection', (socket: Socket) => bareSockets.push(socket));
  server.listen(0, '127.0.0.1');
  bare.listen(0, '127.0.0.1');
  await Promise.all([once(server, 'listening'), once(bare, 'listening')]);
  const get = async (port: number) => {
    const answer = request({ host: '127.0.0.1', port, path: '/', agent: false });
    answer.end();
    const [response] = (await once(answer, 'response')) as [NodeJS.ReadableStream];
    response.resume();
    await once(response, 'end');
  };
  try {
    await get((server.address() as AddressInfo).port);
    await get((bare.address() as AddressInfo).port);
    assert.equal(sockets.length, 1);
    assert.equal(sockets[0]?.listenerCount('timeout'), bareSockets[0]?.listenerCount('timeout'));
  } finally {
    server.closeAllConnections();
    bare.closeAllConnections();
    server.close();
    bare.close();
  }
});
