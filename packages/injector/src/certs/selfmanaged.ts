// Self-managed webhook certificates (`certs.mode: self-managed`). The leader keeps a
// Secret in the injector namespace with a CA and the serving certificate it signed,
// renews either before it runs out, and patches the CA bundle into the mutating
// webhook configurations. Every replica copies the Secret's serving pair onto its
// certificate files, where the CertificateReloader picks it up without a restart.
//
// A CA rotation keeps the old CA in the bundle (`ca-previous.crt`) until it expires:
// replicas still serving a certificate of the old CA stay trusted while the new
// one reaches them. The bundle is patched before the Secret is written, so no
// replica serves a certificate the API server cannot verify yet.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { rename, writeFile } from 'node:fs/promises';
import {
  AdmissionregistrationV1Api,
  CoreV1Api,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type V1Secret,
} from '@kubernetes/client-node';
import { type Log, silentLog } from '../controller/log.ts';
import { type CertificateFiles, readCertificatePair } from './reload.ts';
import {
  type CertificateAndKey,
  createCertificateAuthority,
  issueServingCertificate,
  type Validity,
} from './x509.ts';

export const secretKeys = {
  caCert: 'ca.crt',
  caKey: 'ca.key',
  previousCaCert: 'ca-previous.crt',
  cert: 'tls.crt',
  key: 'tls.key',
} as const;

export type CertificatePolicy = {
  /** Names the serving certificate must carry: `<service>.<namespace>.svc` and `….svc.cluster.local`. */
  dnsNames: readonly string[];
  caLifetimeSeconds: number;
  servingLifetimeSeconds: number;
  /** Renew a certificate once less than this fraction of its lifetime remains (0 < f <= 0.5). */
  renewFraction: number;
};

/** The webhook Service's names, as the API server dials them. */
export function serviceDnsNames(services: readonly string[], namespace: string): string[] {
  return services.flatMap((s) => [`${s}.${namespace}.svc`, `${s}.${namespace}.svc.cluster.local`]);
}

export type CertificateState = {
  ca?: X509Certificate;
  /** The CA's key is present and belongs to it. */
  caKeyValid: boolean;
  previousCa?: X509Certificate;
  serving?: X509Certificate;
  /** The serving key is present and belongs to the serving certificate. */
  servingKeyValid: boolean;
};

export type RotationPlan = {
  newCa: boolean;
  newServing: boolean;
  /** Forget the previous CA (expired, or superseded by another rotation). */
  dropPrevious: boolean;
  reasons: string[];
};

/** What to do, given what the Secret holds and the time: a pure function. */
export function planRotation(state: CertificateState, now: Date, policy: CertificatePolicy): RotationPlan {
  const reasons: string[] = [];
  const caReason = renewalReason('CA', state.ca, state.caKeyValid, now, policy.renewFraction);
  if (caReason) reasons.push(caReason);
  const newCa = caReason !== undefined;
  let newServing = newCa;
  if (!newCa) {
    const servingReason = renewalReason(
      'serving certificate',
      state.serving,
      state.servingKeyValid,
      now,
      policy.renewFraction,
    );
    if (servingReason) reasons.push(servingReason);
    else if (state.ca && state.serving && !signedBy(state.serving, state.ca))
      reasons.push('serving certificate not signed by the CA');
    else if (state.serving && policy.dnsNames.some((dns) => state.serving?.checkHost(dns) !== dns))
      reasons.push('serving certificate does not name every service');
    newServing = reasons.length > 0;
  }
  const previous = state.previousCa;
  const dropPrevious = previous !== undefined && (newCa || previous.validToDate.getTime() <= now.getTime());
  if (dropPrevious && !newCa) reasons.push('previous CA expired');
  return { newCa, newServing, dropPrevious, reasons };
}

function renewalReason(
  what: string,
  cert: X509Certificate | undefined,
  keyValid: boolean,
  now: Date,
  fraction: number,
): string | undefined {
  if (cert === undefined) return `no ${what}`;
  if (!keyValid) return `${what} key missing or not matching`;
  const from = cert.validFromDate.getTime();
  const to = cert.validToDate.getTime();
  const t = now.getTime();
  if (t < from || t >= to) return `${what} not valid now`;
  if (to - t < (to - from) * fraction) return `${what} near expiry`;
  return undefined;
}

function signedBy(cert: X509Certificate, ca: X509Certificate): boolean {
  return cert.checkIssued(ca) && cert.verify(ca.publicKey);
}

export type SecretData = Record<string, string>;

/** Parses the Secret's (decoded) data; anything unreadable counts as absent. */
export function certificateState(data: SecretData | undefined): CertificateState {
  const parse = (pem: string | undefined) => {
    if (!pem) return undefined;
    try {
      return new X509Certificate(pem);
    } catch {
      return undefined;
    }
  };
  const ca = parse(data?.[secretKeys.caCert]);
  const serving = parse(data?.[secretKeys.cert]);
  return {
    ca,
    caKeyValid: ca !== undefined && keyMatches(ca, data?.[secretKeys.caKey]),
    previousCa: parse(data?.[secretKeys.previousCaCert]),
    serving,
    servingKeyValid: serving !== undefined && keyMatches(serving, data?.[secretKeys.key]),
  };
}

function keyMatches(cert: X509Certificate, key: string | undefined): boolean {
  if (!key) return false;
  try {
    return cert.checkPrivateKey(createPrivateKey(key));
  } catch {
    return false;
  }
}

/** Carries out a plan: the Secret data to store (unchanged when the plan does nothing). */
export function applyPlan(
  data: SecretData | undefined,
  plan: RotationPlan,
  now: Date,
  policy: CertificatePolicy,
): SecretData {
  const next: SecretData = { ...data };
  if (plan.dropPrevious) delete next[secretKeys.previousCaCert];
  if (plan.newCa) {
    const old = data?.[secretKeys.caCert];
    const oldCa = certificateState(data).ca;
    // Keep the outgoing CA trusted while certificates it signed may still be served.
    if (old && oldCa && oldCa.validToDate.getTime() > now.getTime()) next[secretKeys.previousCaCert] = old;
    const ca = createCertificateAuthority(
      `veil-injector-ca-${Math.floor(now.getTime() / 1000)}`,
      validity(now, policy.caLifetimeSeconds),
    );
    next[secretKeys.caCert] = ca.cert;
    next[secretKeys.caKey] = ca.key;
  }
  if (plan.newServing) {
    const ca: CertificateAndKey = { cert: next[secretKeys.caCert] ?? '', key: next[secretKeys.caKey] ?? '' };
    const caRemaining = (new X509Certificate(ca.cert).validToDate.getTime() - now.getTime()) / 1000;
    // Never outlive the CA: the next CA rotation renews the serving certificate too.
    const lifetime = Math.max(1, Math.min(policy.servingLifetimeSeconds, Math.floor(caRemaining)));
    const { notBefore, notAfter } = validity(now, lifetime);
    const serving = issueServingCertificate(ca, policy.dnsNames, { notBefore, notAfter });
    next[secretKeys.cert] = serving.cert;
    next[secretKeys.key] = serving.key;
  }
  return next;
}

/** Back-dated by a tenth of the lifetime (at most five minutes) for clocks slightly behind. */
function validity(now: Date, lifetimeSeconds: number): Validity {
  const skewMs = Math.min(300_000, lifetimeSeconds * 100);
  return {
    notBefore: new Date(now.getTime() - skewMs),
    notAfter: new Date(now.getTime() + lifetimeSeconds * 1000),
  };
}

/**
 * What to reconcile from when the Secret is gone (deleted to rotate now): the
 * first CA of the live bundle, with no key. The other replicas serve a
 * certificate of that CA until their next copy, so the new CA is planned as a
 * rotation of it, which keeps it in the bundle as the previous CA.
 */
export function orphanedCaData(liveBundle: string | undefined): SecretData | undefined {
  const pem = liveBundle?.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----\n?/)?.[0];
  return pem === undefined ? undefined : { [secretKeys.caCert]: pem };
}

/** The PEM bundle the webhooks trust: the current CA, then the previous one during an overlap. */
export function caBundle(data: SecretData): string {
  return [data[secretKeys.caCert], data[secretKeys.previousCaCert]]
    .filter((pem): pem is string => Boolean(pem))
    .map((pem) => (pem.endsWith('\n') ? pem : `${pem}\n`))
    .join('');
}

export type SelfManagedOptions = {
  kubeConfig: KubeConfig;
  /** The injector namespace: where the Secret lives. */
  namespace: string;
  secretName: string;
  /** MutatingWebhookConfigurations whose every webhook gets the CA bundle. */
  webhooks: readonly string[];
  policy: CertificatePolicy;
  /** This replica's serving files (the webhook server's `tls`). */
  files: CertificateFiles;
  isLeader(): boolean;
  /** Told the CA bundle after every pass that read one (the controller publishes it to sidecars). */
  onCaBundle?(bundle: string): void;
  /** How often the leader checks the Secret and every replica copies it. */
  intervalMs?: number;
  now?: () => Date;
  log?: Log;
};

export class SelfManagedCertificates {
  readonly #options: SelfManagedOptions;
  readonly #core: CoreV1Api;
  readonly #admission: AdmissionregistrationV1Api;
  readonly #log: Log;
  #timer: NodeJS.Timeout | undefined;
  #queue: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(options: SelfManagedOptions) {
    this.#options = options;
    this.#core = options.kubeConfig.makeApiClient(CoreV1Api);
    this.#admission = options.kubeConfig.makeApiClient(AdmissionregistrationV1Api);
    this.#log = options.log ?? silentLog;
  }

  /** Runs a pass now and then every interval. */
  start(): void {
    this.trigger();
    const tick = () => {
      if (this.#closed) return;
      this.#timer = setTimeout(() => {
        this.trigger();
        tick();
      }, this.#options.intervalMs ?? 30_000);
      this.#timer.unref();
    };
    tick();
  }

  /** A pass: reconciles the Secret and the webhooks when leading, then copies the pair. */
  trigger(): Promise<void> {
    this.#queue = this.#queue.then(() =>
      this.#pass().catch((error) =>
        this.#log.warn('self-managed certificates: pass failed', { error: (error as Error).message }),
      ),
    );
    return this.#queue;
  }

  /** Resolves once this replica's files hold the Secret's pair (start-up: the server needs them). */
  async ready(retryMs = 500): Promise<void> {
    while (!this.#closed) {
      await this.trigger();
      if (await this.#filesCurrent()) return;
      await new Promise((resolve) => setTimeout(resolve, retryMs));
    }
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }

  async #filesCurrent(): Promise<boolean> {
    const data = await this.#readSecret().then((s) => s.data);
    if (!data?.[secretKeys.cert]) return false;
    try {
      const pair = await readCertificatePair(this.#options.files);
      return pair.cert === data[secretKeys.cert] && pair.key === data[secretKeys.key];
    } catch {
      return false;
    }
  }

  async #pass(): Promise<void> {
    if (this.#closed) return;
    let { data, secret } = await this.#readSecret();
    if (this.#options.isLeader()) data = await this.#reconcile(data, secret);
    if (data?.[secretKeys.caCert]) this.#options.onCaBundle?.(caBundle(data));
    if (data?.[secretKeys.cert] && data[secretKeys.key]) await this.#writeFiles(data);
  }

  async #readSecret(): Promise<{ secret: V1Secret | undefined; data: SecretData | undefined }> {
    try {
      const secret = await this.#core.readNamespacedSecret({
        namespace: this.#options.namespace,
        name: this.#options.secretName,
      });
      const data = Object.fromEntries(
        Object.entries(secret.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]),
      );
      return { secret, data };
    } catch (error) {
      if ((error as { code?: number }).code === 404) return { secret: undefined, data: undefined };
      throw error;
    }
  }

  async #reconcile(
    data: SecretData | undefined,
    secret: V1Secret | undefined,
  ): Promise<SecretData | undefined> {
    const now = (this.#options.now ?? (() => new Date()))();
    if (secret === undefined) data = orphanedCaData(await this.#liveBundle());
    const plan = planRotation(certificateState(data), now, this.#options.policy);
    if (!plan.newCa && !plan.newServing && !plan.dropPrevious) {
      if (data) await this.#patchWebhooks(caBundle(data));
      return data;
    }
    const next = applyPlan(data, plan, now, this.#options.policy);
    // Trust first, then serve: the bundle reaches the API server before any replica
    // can serve a certificate of a new CA.
    await this.#patchWebhooks(caBundle(next));
    const encoded = Object.fromEntries(
      Object.entries(next).map(([k, v]) => [k, Buffer.from(v).toString('base64')]),
    );
    const { namespace, secretName: name } = this.#options;
    try {
      if (secret === undefined) {
        await this.#core.createNamespacedSecret({
          namespace,
          body: {
            metadata: { name, namespace, labels: { 'app.kubernetes.io/managed-by': 'veil-controller' } },
            type: 'Opaque',
            data: encoded,
          },
        });
      } else {
        // resourceVersion makes this conditional: a replica that lost the Lease meanwhile loses here.
        await this.#core.replaceNamespacedSecret({ namespace, name, body: { ...secret, data: encoded } });
      }
    } catch (error) {
      const code = (error as { code?: number }).code;
      if (code === 409) {
        this.#log.warn('self-managed certificates: the Secret changed meanwhile; next pass', {
          secret: name,
        });
        return (await this.#readSecret()).data;
      }
      throw error;
    }
    this.#log.info('self-managed certificates rotated', { secret: name, reasons: plan.reasons.join('; ') });
    return next;
  }

  /** The bundle the API server trusts now: the first webhook's, as every pass patches them alike. */
  async #liveBundle(): Promise<string | undefined> {
    const [name] = this.#options.webhooks;
    if (name === undefined) return undefined;
    try {
      const config = await this.#admission.readMutatingWebhookConfiguration({ name });
      const encoded = config.webhooks?.[0]?.clientConfig.caBundle;
      return encoded ? Buffer.from(encoded, 'base64').toString('utf8') : undefined;
    } catch (error) {
      if ((error as { code?: number }).code === 404) return undefined;
      throw error;
    }
  }

  async #patchWebhooks(bundle: string): Promise<void> {
    const encoded = Buffer.from(bundle).toString('base64');
    for (const name of this.#options.webhooks) {
      let config: Awaited<ReturnType<AdmissionregistrationV1Api['readMutatingWebhookConfiguration']>>;
      try {
        config = await this.#admission.readMutatingWebhookConfiguration({ name });
      } catch (error) {
        if ((error as { code?: number }).code === 404) {
          this.#log.warn('self-managed certificates: no such webhook configuration', { name });
          continue;
        }
        throw error;
      }
      const operations: object[] = [];
      (config.webhooks ?? []).forEach((webhook, i) => {
        if (webhook.clientConfig.caBundle === encoded) return;
        operations.push(
          { op: 'test', path: `/webhooks/${i}/name`, value: webhook.name },
          { op: 'add', path: `/webhooks/${i}/clientConfig/caBundle`, value: encoded },
        );
      });
      if (operations.length === 0) continue;
      await this.#admission.patchMutatingWebhookConfiguration(
        {
          name,
          body: [
            { op: 'test', path: '/metadata/resourceVersion', value: config.metadata?.resourceVersion },
            ...operations,
          ],
        },
        setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
      );
      this.#log.info('caBundle patched', { webhookConfiguration: name });
    }
  }

  /** Key then certificate, each by an atomic rename; the reloader rejects the mixed pair in between. */
  async #writeFiles(data: SecretData): Promise<void> {
    const { certFile, keyFile } = this.#options.files;
    let current: { cert: string; key: string } | undefined;
    try {
      current = await readCertificatePair(this.#options.files);
    } catch {
      current = undefined;
    }
    const cert = data[secretKeys.cert] ?? '';
    const key = data[secretKeys.key] ?? '';
    if (current?.key !== key) await atomicWrite(keyFile, key, 0o600);
    if (current?.cert !== cert) await atomicWrite(certFile, cert, 0o644);
  }
}

async function atomicWrite(file: string, content: string, mode: number): Promise<void> {
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, content, { mode });
  await rename(temporary, file);
}
