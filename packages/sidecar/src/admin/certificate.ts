// The admin port's TLS certificate. The controller pushes policies over TLS and
// accepts only a certificate its own CA issued for this pod's UID, so an answer
// from anyone else on the pod network cannot pass for this sidecar's ACK. The
// key pair is made here and never leaves the process; the certificate comes
// from the controller (`POST /v1/certificates`, authenticated by the pod's
// projected token like a policy pull), short-lived, and is renewed at half its
// life. The controller's CA is its push-signing key: when the key file the
// controller publishes names another key than the CA of the certificate held,
// the key was rotated, and a certificate from the new one is fetched at once.
//
// Nothing here holds up startup: until a certificate arrives, TLS handshakes on
// the admin port fail and the controller retries, as for any failed delivery.
import { generateKeyPairSync, type KeyObject, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { createSecureContext, type SecureContext } from 'node:tls';
import { request } from 'undici';
import { z } from 'zod';
import { type BackoffOptions, backoffDelay } from '../audit/backoff.ts';
import { ControllerAgent } from '../controllerca.ts';
import { parseJson, readControllerAnswer, readControllerToken } from '../controllercall.ts';

const defaultCertificateBackoff: BackoffOptions = { baseMs: 1_000, capMs: 60_000 };

/** However short a certificate's life, no sooner than this after the last fetch. */
const minRenewalMs = 60_000;

const issuedSchema = z.object({ certificate: z.string().min(1), ca: z.string().min(1) });

/** A certificate and its chain are a few kilobytes. */
const maxAnswerBytes = 64 * 1024;

export interface AdminCertificateOptions {
  /** The controller's endpoint (the pull URL); `/v1/certificates` is asked there. */
  readonly url: string;
  /** The projected service-account token; read on every attempt, as the kubelet rotates it. */
  readonly tokenFile: string;
  /** PEM CA bundle for the controller's serving certificate; the system roots when unset. */
  readonly caFile?: string;
  /** The controller's public JWK, as mounted: a change of key means a change of CA. */
  readonly controllerKeyFile?: string;
  readonly backoff?: BackoffOptions;
  /** How often the key file is compared with the CA held; default 30 s. */
  readonly keyCheckMs?: number;
  /** Connect and answer timeout of one attempt; default 10 s. */
  readonly timeoutMs?: number;
  readonly log?: (message: string) => void;
}

export interface AdminCertificate {
  /** What TLS handshakes on the admin port use; undefined until the first certificate arrives. */
  context(): SecureContext | undefined;
  /** Settles with true once a certificate is held, false if closed before. */
  readonly ready: Promise<boolean>;
  close(): Promise<void>;
}

/** `renewAt` on this process's monotonic clock (`performance.now()`). */
type Held = { context: SecureContext; renewAt: number; caKey: string };

/** Starts fetching at once and returns without waiting for the controller. */
export function startAdminCertificate(options: AdminCertificateOptions): AdminCertificate {
  const stop = new AbortController();
  const log = options.log ?? (() => undefined);
  const backoff = options.backoff ?? defaultCertificateBackoff;
  const keyCheckMs = options.keyCheckMs ?? 30_000;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const agent = new ControllerAgent({ caFile: options.caFile, connectTimeoutMs: timeoutMs });
  // One key pair per process: a restart makes a new one.
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const key = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const publicKeyPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  let held: Held | undefined;
  let resolveReady: (value: boolean) => void = () => undefined;
  const ready = new Promise<boolean>((resolve) => {
    resolveReady = resolve;
  });

  async function fetchCertificate(): Promise<Held> {
    const token = await readControllerToken(options.tokenFile);
    const response = await request(`${options.url.replace(/\/+$/, '')}/v1/certificates`, {
      method: 'POST',
      dispatcher: await agent.get(),
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ publicKey: publicKeyPem }),
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal: stop.signal,
    });
    const text = await readControllerAnswer(response.body, maxAnswerBytes);
    if (response.statusCode !== 200)
      throw new Error(`the controller answered ${response.statusCode}: ${text.slice(0, 160)}`);
    const parsed = issuedSchema.safeParse(parseJson(text));
    if (!parsed.success) throw new Error('the controller answered 200 without a certificate');
    const leaf = new X509Certificate(parsed.data.certificate);
    const ca = new X509Certificate(parsed.data.ca);
    // A certificate for another key, or not from the CA sent with it, would fail every handshake.
    if (!leaf.checkPrivateKey(privateKey) || !leaf.verify(ca.publicKey))
      throw new Error('the controller answered a certificate that does not fit this key and its CA');
    // Half its life from now, by this clock: its validity dates are the
    // controller's, and a node whose clock runs hours apart would otherwise see
    // it due at once (fetching again and again) or only once expired.
    const life = leaf.validToDate.getTime() - leaf.validFromDate.getTime();
    return {
      context: createSecureContext({ key, cert: parsed.data.certificate }),
      renewAt: performance.now() + Math.max(minRenewalMs, life / 2),
      caKey: rawKey(ca.publicKey),
    };
  }

  /** Whether the controller's key file names another key than the CA of `current`. */
  async function keyRotated(current: Held): Promise<boolean> {
    if (options.controllerKeyFile === undefined) return false;
    try {
      const jwk = JSON.parse(await readFile(options.controllerKeyFile, 'utf8')) as { x?: unknown };
      return typeof jwk.x === 'string' && jwk.x !== current.caKey;
    } catch {
      // Unreadable now, perhaps being replaced: the key the pushes need is then unknown too.
      return false;
    }
  }

  async function run(): Promise<void> {
    for (let failures = 0; ; ) {
      if (stop.signal.aborted) return;
      try {
        const next = await fetchCertificate();
        held = next;
        resolveReady(true);
        // Until the controller restarts with its new key, it still certifies with the old one.
        if (await keyRotated(next)) throw new Error("the controller's CA is not yet its published key");
        if (failures > 0) log(`admin certificate: obtained after ${failures} failed attempts`);
        failures = 0;
        while (performance.now() < next.renewAt) {
          await sleep(Math.min(keyCheckMs, next.renewAt - performance.now()), undefined, {
            signal: stop.signal,
          });
          if (await keyRotated(next)) {
            log("admin certificate: the controller's key changed; fetching a certificate from the new one");
            break;
          }
        }
      } catch (error) {
        if (stop.signal.aborted) return;
        failures += 1;
        if (failures === 1 || failures % 10 === 0)
          log(`admin certificate: attempt ${failures} failed, retrying: ${(error as Error).message}`);
        // The certificate held, if any, serves on: the controller may still trust it.
        await sleep(backoffDelay(failures, backoff), undefined, { signal: stop.signal }).catch(
          () => undefined,
        );
      }
    }
  }

  const done = run()
    .catch((error: unknown) => log(`admin certificate: stopped: ${(error as Error).message}`))
    .finally(() => {
      resolveReady(false);
      return agent.close();
    });

  return {
    context: () => held?.context,
    ready,
    async close() {
      stop.abort();
      await done;
    },
  };
}

/** The base64url raw public key, as an OKP JWK's `x` carries it. */
function rawKey(publicKey: KeyObject): string {
  const jwk = publicKey.export({ format: 'jwk' });
  return typeof jwk.x === 'string' ? jwk.x : '';
}
