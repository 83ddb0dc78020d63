// One admin port, two protocols. Kubelet probes and Prometheus scrapes speak
// plain HTTP and stay as they are, and so do the chart's probes and the
// NetworkPolicy; the controller speaks TLS to the same port. The first byte a
// client sends tells them apart: a TLS handshake starts with a record of type 22.
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { type SecureContext, TLSSocket } from 'node:tls';

const handshakeRecord = 0x16;

/** A client that connects and sends nothing, or never finishes its handshake, is let go after this. */
const firstBytesTimeoutMs = 10_000;

/**
 * Makes `server` take TLS connections too, using `context()` for each handshake;
 * while it returns undefined (no certificate yet), TLS connections are closed.
 */
export function acceptTls(server: Server, context: () => SecureContext | undefined): void {
  const serve = server.listeners('connection') as ((socket: Socket) => void)[];
  server.removeAllListeners('connection');
  const hand = (socket: Socket) => {
    for (const listener of serve) listener.call(server, socket);
  };
  server.on('connection', (socket: Socket) => {
    // Removed with the timer it serves: HTTP sets timeouts of its own on this socket later.
    const silent = () => socket.destroy();
    socket.setTimeout(firstBytesTimeoutMs);
    socket.once('timeout', silent);
    socket.once('data', (first: Buffer) => {
      socket.pause();
      socket.unshift(first);
      socket.setTimeout(0);
      socket.off('timeout', silent);
      if (first[0] !== handshakeRecord) {
        hand(socket);
        process.nextTick(() => socket.resume());
        return;
      }
      const secureContext = context();
      if (secureContext === undefined) {
        socket.destroy();
        return;
      }
      const tls = new TLSSocket(socket, { isServer: true, secureContext });
      const handshaking = () => tls.destroy();
      tls.setTimeout(firstBytesTimeoutMs);
      tls.once('timeout', handshaking);
      tls.on('error', () => tls.destroy());
      tls.once('secure', () => {
        tls.setTimeout(0);
        tls.off('timeout', handshaking);
      });
      // At once, not when the handshake is done: HTTP then reads the socket, and
      // so sees a client that hangs up halfway.
      hand(tls as unknown as Socket);
    });
    socket.on('error', () => socket.destroy());
  });
}
