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
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { SecureContext } from 'node:tls';
import { type BackoffOptions, backoffDelay } from '../audit/backoff.ts';
import { AdminCertificateFetcher, type HeldCertificate } from './certificatefetcher.ts';

const defaultCertificateBackoff: BackoffOptions = { baseMs: 1_000, capMs: 60_000 };

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

/** What the renewal loop works with: how to fetch, where the result goes, and its pacing. */
interface Renewal {
  readonly fetcher: AdminCertificateFetcher;
  readonly hold: (held: HeldCertificate) => void;
  readonly controllerKeyFile: string | undefined;
  readonly backoff: BackoffOptions;
  readonly keyCheckMs: number;
  readonly signal: AbortSignal;
  readonly log: (message: string) => void;
}

/** Starts fetching at once and returns without waiting for the controller. */
export function startAdminCertificate(options: AdminCertificateOptions): AdminCertificate {
  const stop = new AbortController();
  const log = options.log ?? (() => undefined);
  const fetcher = new AdminCertificateFetcher({
    url: options.url,
    tokenFile: options.tokenFile,
    caFile: options.caFile,
    timeoutMs: options.timeoutMs ?? 10_000,
    signal: stop.signal,
  });
  let held: HeldCertificate | undefined;
  let resolveReady: (value: boolean) => void = () => undefined;
  const ready = new Promise<boolean>((resolve) => {
    resolveReady = resolve;
  });

  const done = renew({
    fetcher,
    hold(next) {
      held = next;
      resolveReady(true);
    },
    controllerKeyFile: options.controllerKeyFile,
    backoff: options.backoff ?? defaultCertificateBackoff,
    keyCheckMs: options.keyCheckMs ?? 30_000,
    signal: stop.signal,
    log,
  })
    .catch((error: unknown) => log(`admin certificate: stopped: ${(error as Error).message}`))
    .finally(() => {
      resolveReady(false);
      return fetcher.close();
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

/** Fetches a certificate, holds it until it is due or the controller's key changes, and again; until stopped. */
async function renew(renewal: Renewal): Promise<void> {
  const { signal, log } = renewal;
  for (let failures = 0; ; ) {
    if (signal.aborted) return;
    try {
      const next = await renewal.fetcher.fetch();
      renewal.hold(next);
      // Until the controller restarts with its new key, it still certifies with the old one.
      if (await keyRotated(renewal.controllerKeyFile, next))
        throw new Error("the controller's CA is not yet its published key");
      if (failures > 0) log(`admin certificate: obtained after ${failures} failed attempts`);
      failures = 0;
      await untilDue(renewal, next);
    } catch (error) {
      if (signal.aborted) return;
      failures += 1;
      if (failures === 1 || failures % 10 === 0)
        log(`admin certificate: attempt ${failures} failed, retrying: ${(error as Error).message}`);
      // The certificate held, if any, serves on: the controller may still trust it.
      await sleep(backoffDelay(failures, renewal.backoff), undefined, { signal }).catch(() => undefined);
    }
  }
}

/** Waits until `current` is due for renewal, or the controller's key no longer is its CA. */
async function untilDue(renewal: Renewal, current: HeldCertificate): Promise<void> {
  while (performance.now() < current.renewAt) {
    await sleep(Math.min(renewal.keyCheckMs, current.renewAt - performance.now()), undefined, {
      signal: renewal.signal,
    });
    if (await keyRotated(renewal.controllerKeyFile, current)) {
      renewal.log("admin certificate: the controller's key changed; fetching a certificate from the new one");
      return;
    }
  }
}

/** Whether the controller's key file names another key than the CA of `current`. */
async function keyRotated(controllerKeyFile: string | undefined, current: HeldCertificate): Promise<boolean> {
  if (controllerKeyFile === undefined) return false;
  try {
    const jwk = JSON.parse(await readFile(controllerKeyFile, 'utf8')) as { x?: unknown };
    return typeof jwk.x === 'string' && jwk.x !== current.caKey;
  } catch {
    // Unreadable now, perhaps being replaced: the key the pushes need is then unknown too.
    return false;
  }
}
