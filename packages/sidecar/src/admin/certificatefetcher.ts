import { generateKeyPairSync, type KeyObject, X509Certificate } from 'node:crypto';
import { createSecureContext, type SecureContext } from 'node:tls';
import { request } from 'undici';
import { z } from 'zod';
import { ControllerAgent } from '../controllerca.ts';
import { parseJson, readControllerAnswer, readControllerToken } from '../controllercall.ts';

/** However short a certificate's life, no sooner than this after the last fetch. */
const minRenewalMs = 60_000;

const issuedSchema = z.object({ certificate: z.string().min(1), ca: z.string().min(1) });

/** A certificate and its chain are a few kilobytes. */
const maxAnswerBytes = 64 * 1024;

/** `renewAt` on this process's monotonic clock (`performance.now()`). */
export type HeldCertificate = { context: SecureContext; renewAt: number; caKey: string };

export interface AdminCertificateFetcherOptions {
  /** The controller's endpoint (the pull URL); `/v1/certificates` is asked there. */
  readonly url: string;
  /** The projected service-account token; read on every attempt, as the kubelet rotates it. */
  readonly tokenFile: string;
  /**
   * PEM CA bundle for the controller's serving certificate, read for every attempt
   * (the pod's `veil.dev/controller-ca` annotation in a cluster); the system roots when unset.
   */
  readonly caFile: string | undefined;
  /** Connect and answer timeout of one attempt. */
  readonly timeoutMs: number;
  /** Aborts an attempt under way. */
  readonly signal: AbortSignal;
}

/** Asks the controller (`POST /v1/certificates`) to certify this process's key pair. */
export class AdminCertificateFetcher {
  readonly #options: AdminCertificateFetcherOptions;
  readonly #agent: ControllerAgent;
  readonly #privateKey: KeyObject;
  readonly #key: string;
  readonly #publicKeyPem: string;

  constructor(options: AdminCertificateFetcherOptions) {
    this.#options = options;
    this.#agent = new ControllerAgent({ caFile: options.caFile, connectTimeoutMs: options.timeoutMs });
    // One key pair per process: a restart makes a new one.
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    this.#privateKey = privateKey;
    this.#key = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    this.#publicKeyPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  }

  async fetch(): Promise<HeldCertificate> {
    const { url, tokenFile, timeoutMs, signal } = this.#options;
    const token = await readControllerToken(tokenFile);
    const response = await request(`${url.replace(/\/+$/, '')}/v1/certificates`, {
      method: 'POST',
      dispatcher: await this.#agent.get(),
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ publicKey: this.#publicKeyPem }),
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal,
    });
    const text = await readControllerAnswer(response.body, maxAnswerBytes);
    if (response.statusCode !== 200)
      throw new Error(`the controller answered ${response.statusCode}: ${text.slice(0, 160)}`);
    const parsed = issuedSchema.safeParse(parseJson(text));
    if (!parsed.success) throw new Error('the controller answered 200 without a certificate');
    return this.#held(parsed.data.certificate, parsed.data.ca);
  }

  close(): Promise<void> {
    return this.#agent.close();
  }

  #held(certificate: string, caPem: string): HeldCertificate {
    const leaf = new X509Certificate(certificate);
    const ca = new X509Certificate(caPem);
    // A certificate for another key, or not from the CA sent with it, would fail every handshake.
    if (!leaf.checkPrivateKey(this.#privateKey) || !leaf.verify(ca.publicKey))
      throw new Error('the controller answered a certificate that does not fit this key and its CA');
    // Half its life from now, by this clock: its validity dates are the
    // controller's, and a node whose clock runs hours apart would otherwise see
    // it due at once (fetching again and again) or only once expired.
    const life = leaf.validToDate.getTime() - leaf.validFromDate.getTime();
    return {
      context: createSecureContext({ key: this.#key, cert: certificate }),
      renewAt: performance.now() + Math.max(minRenewalMs, life / 2),
      caKey: rawKey(ca.publicKey),
    };
  }
}

/** The base64url raw public key, as an OKP JWK's `x` carries it. */
function rawKey(publicKey: KeyObject): string {
  const jwk = publicKey.export({ format: 'jwk' });
  return typeof jwk.x === 'string' ? jwk.x : '';
}
