// Serving rotated certificates without a restart. cert-manager and the kubelet swap a
// mounted Secret by renaming a `..data` symlink in its directory, which a watch on the
// file itself never sees; so the directories are watched, and polled as a fallback
// for file systems whose events get lost.

import { createHash, X509Certificate } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { type FSWatcher, watch } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { createSecureContext, type SecureContextOptions } from 'node:tls';

export type CertificateFiles = { certFile: string; keyFile: string };

export type CertificatePair = { cert: string; key: string };

export type CertificateReloadOptions = CertificateFiles & {
  /** The TLS server to update, such as a fastify HTTPS app's `server`. */
  server: { setSecureContext(options: SecureContextOptions): void };
  /** The pair the server was started with. */
  initial: CertificatePair;
  /** Options besides cert and key, applied again with every new pair. */
  tlsOptions?: SecureContextOptions;
  pollIntervalMs?: number;
  /** Coalesces the burst of events one rotation makes. */
  debounceMs?: number;
};

type ReloaderEvents = {
  /** A new pair is being served; the SHA-256 fingerprint of its certificate. */
  reloaded: [fingerprint256: string];
  /**
   * The files changed but do not form a usable pair (yet), or their certificate
   * is not valid now: the previous pair stays.
   */
  rejected: [error: Error];
};

export async function readCertificatePair(files: CertificateFiles): Promise<CertificatePair> {
  const [cert, key] = await Promise.all([readFile(files.certFile, 'utf8'), readFile(files.keyFile, 'utf8')]);
  return { cert, key };
}

export class CertificateReloader extends EventEmitter<ReloaderEvents> {
  readonly #options: CertificateReloadOptions;
  readonly #watchers: FSWatcher[];
  readonly #poll: NodeJS.Timeout;
  #debounce: NodeJS.Timeout | undefined;
  #applied: string;
  #queue: Promise<boolean> = Promise.resolve(false);

  constructor(options: CertificateReloadOptions) {
    super();
    this.#options = options;
    this.#applied = digest(options.initial);
    const directories = new Set([dirname(options.certFile), dirname(options.keyFile)]);
    this.#watchers = [...directories].map((directory) =>
      // A failing watch (its directory gone) leaves the poll to do the work.
      watch(directory, { persistent: false }, () => this.#schedule()).on('error', () => undefined),
    );
    this.#poll = setInterval(() => void this.reload(), options.pollIntervalMs ?? 60_000).unref();
  }

  /** Reads the files and serves them if they changed and form a valid pair. Resolves whether it did. */
  reload(): Promise<boolean> {
    this.#queue = this.#queue.then(() => this.#reloadOnce());
    return this.#queue;
  }

  close(): void {
    for (const watcher of this.#watchers) watcher.close();
    clearInterval(this.#poll);
    clearTimeout(this.#debounce);
  }

  #schedule(): void {
    clearTimeout(this.#debounce);
    this.#debounce = setTimeout(() => void this.reload(), this.#options.debounceMs ?? 100);
  }

  async #reloadOnce(): Promise<boolean> {
    let pair: CertificatePair;
    let fingerprint: string;
    try {
      pair = await readCertificatePair(this.#options);
      if (digest(pair) === this.#applied) return false;
      // Half-way through a rotation the key may not match the certificate yet; building
      // a context first catches that before the server would serve it.
      createSecureContext({ ...this.#options.tlsOptions, ...pair });
      const certificate = new X509Certificate(pair.cert);
      assertValidNow(certificate, this.#options.certFile);
      fingerprint = certificate.fingerprint256;
    } catch (error) {
      this.emit('rejected', error instanceof Error ? error : new Error(String(error)));
      return false;
    }
    this.#options.server.setSecureContext({ ...this.#options.tlsOptions, ...pair });
    this.#applied = digest(pair);
    this.emit('reloaded', fingerprint);
    return true;
  }
}

/**
 * Clients refuse a certificate outside its validity, so serving one would cut
 * every client off until the next good pair. One that merely expires sooner
 * than the pair served is taken: a CA may issue shorter-lived replacements.
 */
function assertValidNow(certificate: X509Certificate, certFile: string): void {
  const now = Date.now();
  const notBefore = new Date(certificate.validFrom);
  const notAfter = new Date(certificate.validTo);
  if (now < notBefore.getTime())
    throw new Error(`the certificate in ${certFile} is not valid before ${notBefore.toISOString()}`);
  if (now > notAfter.getTime())
    throw new Error(`the certificate in ${certFile} expired at ${notAfter.toISOString()}`);
}

function digest(pair: CertificatePair): string {
  return createHash('sha256').update(pair.cert).update('\0').update(pair.key).digest('hex');
}
