import type { Server } from 'node:net';

/** Where an HTTPS server that just started listening can be reached, for tests and logs. */
export function listeningUrl(server: Server): { url: string; port: number } {
  const address = server.address();
  if (address === null || typeof address === 'string')
    throw new Error('the server is not listening on a TCP port');
  const host =
    address.address === '0.0.0.0' || address.address === '::'
      ? 'localhost'
      : address.address.includes(':')
        ? `[${address.address}]`
        : address.address;
  return { url: `https://${host}:${address.port}`, port: address.port };
}
