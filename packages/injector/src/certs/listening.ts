import type { Server } from 'node:net';
import type { SecureContextOptions } from 'node:tls';
import type { FastifyInstance } from 'fastify';
import type { Log } from '../controller/log.ts';
import { type CertificateFiles, type CertificatePair, CertificateReloader } from './reload.ts';

/** What every HTTPS port of the injector accepts. */
export const tlsOptions: SecureContextOptions = { minVersion: 'TLSv1.2' };

export interface HttpsListener {
  readonly url: string;
  readonly port: number;
  readonly certificates: CertificateReloader;
  /** Stops reloading and closes the server, cutting connections still open after the grace. */
  close(): Promise<void>;
}

export interface ListenOptions {
  readonly files: CertificateFiles;
  /** The pair the app was created with. */
  readonly initial: CertificatePair;
  readonly host?: string;
  readonly port: number;
  /**
   * Clients such as the API server keep connections that never carry a
   * request, which Node does not count as idle; after this grace for requests
   * under way, they are cut.
   */
  readonly closeGraceMs: number;
  /** Hears of every certificate served anew or refused on this port. */
  readonly log?: Log;
}

/** Starts an HTTPS fastify app whose certificate files are reloaded when they change. */
export async function listenHttps(app: FastifyInstance, options: ListenOptions): Promise<HttpsListener> {
  const certificates = new CertificateReloader({
    ...options.files,
    server: app.server as unknown as { setSecureContext(options: SecureContextOptions): void },
    initial: options.initial,
    tlsOptions,
  });
  try {
    await app.listen({ host: options.host ?? '0.0.0.0', port: options.port });
  } catch (error) {
    certificates.close();
    throw error;
  }
  const where = listeningUrl(app.server);
  if (options.log) logCertificates(certificates, options.log, where.url);
  return {
    ...where,
    certificates,
    async close() {
      certificates.close();
      const closing = app.close();
      const cut = setTimeout(() => app.server.closeAllConnections(), options.closeGraceMs);
      await closing;
      clearTimeout(cut);
    },
  };
}

/** The URL names the port: one process serves several, each logging alike. */
function logCertificates(certificates: CertificateReloader, log: Log, url: string): void {
  certificates.on('reloaded', (fingerprint) => log.info('serving a new certificate', { url, fingerprint }));
  certificates.on('rejected', (error) =>
    log.warn('certificate files not usable: the certificate served stays', { url, error: error.message }),
  );
}

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
