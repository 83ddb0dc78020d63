// The injector process: the pod webhook, the policy controller and the pull
// endpoint, in one. Configuration comes from flags or VEIL_* variables (a flag
// wins), checked with zod before anything starts, so a bad deployment fails at
// once. SIGTERM hands the Lease back, so another replica leads within a renew
// interval instead of a lease duration. packages/injector/rbac.md lists the
// settings and the permissions a deployment needs.
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import {
  AuthenticationV1Api,
  CoreV1Api,
  KubeConfig,
  type V1SelfSubjectReview,
} from '@kubernetes/client-node';
import { nonBlank, seconds, wholeNumber } from '@veil/core';
import { z } from 'zod';
import { CaBundleHolder, caFileBeside, FileCaBundle } from './certs/cabundle.ts';
import { SelfManagedCertificates, serviceDnsNames } from './certs/selfmanaged.ts';
import { type ApprovalsApi, startApprovalsApi } from './controller/approvals.ts';
import { type Controller, startController } from './controller/controller.ts';
import type { PushEvent } from './controller/distributor.ts';
import { loadControllerKey } from './controller/keys.ts';
import { defaultLeaseName } from './controller/leader.ts';
import { jsonLog, type Log } from './controller/log.ts';
import { type PullServer, startPullServer, tokenReviewAuthenticator } from './controller/pull.ts';
import type { ApprovalStampSettings } from './webhook/approvals.ts';
import { excludedNamespaces } from './webhook/inject.ts';
import { dnsLabel, dnsSubdomain } from './webhook/names.ts';
import { startWebhookServer, type WebhookServer } from './webhook/server.ts';
import { type InjectionSettings, injectionSettingsSchema } from './webhook/settings.ts';
import { currentTrust } from './webhook/trust.ts';
import { settingsWarnings } from './webhook/warnings.ts';

// 0 asks the system for a free port: tests listen so.
const port = wholeNumber(0, 65_535);
// Node fires a timer set past 2^31 - 1 ms after 1 ms: every timer value stays below it.
const maxTimerSeconds = 2_147_483;
const day = 86_400;
const debounceMs = wholeNumber(0, 600_000);
const list = z
  .string()
  .default('')
  .transform((value) =>
    value
      .split(',')
      .map((n) => n.trim())
      .filter(Boolean),
  );

/** Which of the ports are the same fixed number: each server needs its own. */
function samePorts(ports: Record<string, number | undefined>): string[] {
  const fixed = Object.entries(ports).filter(([, value]) => value !== undefined && value !== 0);
  return fixed
    .filter(([, value], index) => fixed.some(([, other], at) => at !== index && other === value))
    .map(([name]) => name);
}

export const injectorConfigSchema = z
  .object({
    settingsFile: z
      .string()
      .min(1)
      .describe('The injection settings, JSON (the chart renders settings.json)'),
    tlsCertFile: z.string().min(1).describe('Serving certificate (PEM) of the webhook and pull ports'),
    tlsKeyFile: z.string().min(1),
    signingKeyFile: z.string().min(1).describe("The controller's Ed25519 private JWK"),
    host: nonBlank.default('0.0.0.0'),
    webhookPort: port.default(8443),
    pullPort: port.default(8444),
    approvalsPort: port
      .optional()
      .describe('The approvals API sidecars open held requests on (8445 in the chart); off when unset'),
    identity: nonBlank.describe('This replica: the Lease holder; the pod name in a cluster'),
    namespaces: list
      .pipe(z.array(dnsLabel))
      .describe('Comma-separated namespaces to watch; empty watches all'),
    leaseName: dnsSubdomain.default(defaultLeaseName),
    leaseDurationSeconds: wholeNumber(1, maxTimerSeconds).default(15),
    // Below a tenth of a second, renewals would load the API server more than they secure the lease.
    leaseRenewSeconds: seconds(0.1, maxTimerSeconds / 2).default(5),
    pushDebounceMs: debounceMs.default(100),
    pushMaxDebounceMs: debounceMs.default(1000),
    resyncSeconds: seconds(0.1, day).default(60),
    logLevel: z.enum(['info', 'warn']).default('info'),
    kubeconfig: z
      .string()
      .min(1)
      .optional()
      .describe('One kubeconfig file; absent: KUBECONFIG, else the pod service account'),
    approvalControllers: z
      .string()
      .default('')
      .transform((list) =>
        list
          .split(',')
          .map((n) => n.trim())
          .filter(Boolean),
      )
      .describe(
        "Comma-separated usernames that may expire approvals and record their use: the controller's service account",
      ),
    approvalRequesterPrefixes: list.describe(
      'Comma-separated prefixes the API server puts before an OIDC subject to make a username (its --oidc-username-prefix), so that user is refused a decision on their own request',
    ),
    approvalRetentionDays: z.coerce
      .number()
      .min(0)
      .default(0)
      .describe(
        'Days a settled approval is kept past its expiry before the sweep deletes it; 0 keeps them all',
      ),
    certsMode: z
      .enum(['files', 'self-managed'])
      .default('files')
      .describe(
        'files: serve the mounted pair as it is; self-managed: the leader keeps a CA and the pair in a Secret',
      ),
    certsSecretName: dnsSubdomain.default('veil-injector-certs'),
    certsServices: list.describe('Comma-separated Services the serving certificate names (self-managed)'),
    certsWebhooks: list.describe(
      'Comma-separated MutatingWebhookConfigurations given the CA bundle (self-managed)',
    ),
    certsCaLifetimeSeconds: seconds(1, 36_500 * day).default(10 * 365 * day),
    certsServingLifetimeSeconds: seconds(1, 36_500 * day).default(365 * day),
    certsRenewFraction: z.coerce
      .number()
      .gt(0)
      .max(0.5, { error: 'at most 0.5 (the fraction of its lifetime a certificate has left when renewed)' })
      .default(1 / 3),
    certsCheckSeconds: seconds(0.1, day).default(60),
  })
  .refine((c) => c.leaseRenewSeconds * 2 <= c.leaseDurationSeconds, {
    message: 'the renew interval is at most half the lease duration',
    path: ['leaseRenewSeconds'],
  })
  .refine((c) => c.certsMode !== 'self-managed' || c.certsServices.length > 0, {
    message: 'self-managed certificates need the Services to name',
    path: ['certsServices'],
  })
  // Its own webhook admits approval creations from these users only: without one, none could be opened.
  .refine((c) => c.approvalsPort === undefined || c.approvalControllers.length > 0, {
    message:
      'the approvals API needs --approval-controllers (VEIL_APPROVAL_CONTROLLERS): without them its own webhook refuses every approval it opens',
    path: ['approvalsPort'],
  })
  .superRefine(({ webhookPort, pullPort, approvalsPort }, context) => {
    for (const name of samePorts({ webhookPort, pullPort, approvalsPort })) {
      context.addIssue({ code: 'custom', path: [name], message: 'must differ from the other ports' });
    }
  });

export type InjectorConfig = z.infer<typeof injectorConfigSchema>;

const flags = {
  settings: ['settingsFile', 'VEIL_SETTINGS_FILE'],
  'tls-cert': ['tlsCertFile', 'VEIL_TLS_CERT_FILE'],
  'tls-key': ['tlsKeyFile', 'VEIL_TLS_KEY_FILE'],
  'signing-key': ['signingKeyFile', 'VEIL_SIGNING_KEY_FILE'],
  host: ['host', 'VEIL_HOST'],
  'webhook-port': ['webhookPort', 'VEIL_WEBHOOK_PORT'],
  'pull-port': ['pullPort', 'VEIL_PULL_PORT'],
  'approvals-port': ['approvalsPort', 'VEIL_APPROVALS_PORT'],
  identity: ['identity', 'VEIL_POD_NAME'],
  namespaces: ['namespaces', 'VEIL_WATCH_NAMESPACES'],
  'lease-name': ['leaseName', 'VEIL_LEASE_NAME'],
  'lease-duration': ['leaseDurationSeconds', 'VEIL_LEASE_DURATION_SECONDS'],
  'lease-renew': ['leaseRenewSeconds', 'VEIL_LEASE_RENEW_SECONDS'],
  'push-debounce-ms': ['pushDebounceMs', 'VEIL_PUSH_DEBOUNCE_MS'],
  'push-max-debounce-ms': ['pushMaxDebounceMs', 'VEIL_PUSH_MAX_DEBOUNCE_MS'],
  resync: ['resyncSeconds', 'VEIL_RESYNC_SECONDS'],
  'log-level': ['logLevel', 'VEIL_LOG_LEVEL'],
  'approval-controllers': ['approvalControllers', 'VEIL_APPROVAL_CONTROLLERS'],
  'approval-requester-prefixes': ['approvalRequesterPrefixes', 'VEIL_APPROVAL_REQUESTER_PREFIXES'],
  'approval-retention-days': ['approvalRetentionDays', 'VEIL_APPROVAL_RETENTION_DAYS'],
  kubeconfig: ['kubeconfig', 'VEIL_KUBECONFIG'],
  'certs-mode': ['certsMode', 'VEIL_CERTS_MODE'],
  'certs-secret': ['certsSecretName', 'VEIL_CERTS_SECRET'],
  'certs-services': ['certsServices', 'VEIL_CERTS_SERVICES'],
  'certs-webhooks': ['certsWebhooks', 'VEIL_CERTS_WEBHOOKS'],
  'certs-ca-lifetime': ['certsCaLifetimeSeconds', 'VEIL_CERTS_CA_LIFETIME_SECONDS'],
  'certs-serving-lifetime': ['certsServingLifetimeSeconds', 'VEIL_CERTS_SERVING_LIFETIME_SECONDS'],
  'certs-renew-fraction': ['certsRenewFraction', 'VEIL_CERTS_RENEW_FRACTION'],
  'certs-check': ['certsCheckSeconds', 'VEIL_CERTS_CHECK_SECONDS'],
} as const;

/** Flags first, then the environment; throws with every problem named by its flag. */
export function parseInjectorConfig(argv: string[], env: NodeJS.ProcessEnv): InjectorConfig {
  const { values } = parseArgs({
    args: argv,
    options: Object.fromEntries(Object.keys(flags).map((flag) => [flag, { type: 'string' as const }])),
    strict: true,
  });
  const raw: Record<string, string | undefined> = {};
  for (const [flag, [field, variable]] of Object.entries(flags)) {
    raw[field] = (values[flag] as string | undefined) ?? (env[variable] || undefined);
  }
  raw.identity ??= hostname();
  const parsed = injectorConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const byField = new Map<string, string>(
      Object.entries(flags).map(([flag, [field, variable]]) => [field, `--${flag} (${variable})`]),
    );
    const problems = parsed.error.issues.map(
      (i) => `${byField.get(String(i.path[0])) ?? i.path.join('.')}: ${i.message}`,
    );
    throw new Error(`invalid injector configuration: ${problems.join('; ')}`);
  }
  return parsed.data;
}

export type InjectorExtras = {
  /** Overrides the config's kubeconfig (and the in-cluster default). */
  kubeConfig?: KubeConfig;
  log?: Log;
  onPush?(event: PushEvent): void;
};

export type RunningInjector = {
  webhook: WebhookServer;
  pull: PullServer;
  /** Only when an approvals port is configured. */
  approvals: ApprovalsApi | undefined;
  controller: Controller;
  /** Only with `certsMode: self-managed`. */
  certificates: SelfManagedCertificates | undefined;
  settings: InjectionSettings;
  /** Graceful: the Lease is handed back unless `release` is false. */
  close(options?: { release?: boolean }): Promise<void>;
};

export async function startInjector(
  config: InjectorConfig,
  extras: InjectorExtras = {},
): Promise<RunningInjector> {
  const log = extras.log ?? jsonLog('injector');
  const settings = await readSettings(config.settingsFile);
  for (const warning of settingsWarnings(settings)) log.warn(warning);
  const kubeConfig = extras.kubeConfig ?? loadKubeConfig(config.kubeconfig);
  const key = await loadControllerKey(config.signingKeyFile);
  const trustWriters = await ownUsernames(kubeConfig);
  const { controllerKey } = settings;
  let certificates: SelfManagedCertificates | undefined;
  // What sidecars trust the pull and approvals ports by: self-managed, the Secret's
  // bundle; otherwise the `ca.crt` beside the mounted pair (cert-manager writes one).
  const caBundle =
    config.certsMode === 'self-managed'
      ? new CaBundleHolder()
      : new FileCaBundle({ file: caFileBeside(config.tlsCertFile) });
  if (caBundle instanceof FileCaBundle) await caBundle.reload();
  const closeCaBundle = () => {
    if (caBundle instanceof FileCaBundle) caBundle.close();
  };
  // The webhook waits for the controller's caches, so it never injects a pod
  // without the bootstrap policy merely because the list had not arrived yet.
  const controller = await startController({
    kubeConfig,
    identity: config.identity,
    key,
    namespace: settings.injectorNamespace,
    namespaces: config.namespaces,
    excludedNamespaces: excludedNamespaces(settings),
    publishKey:
      controllerKey.source === 'configMap' ? { name: controllerKey.name, key: controllerKey.key } : undefined,
    caBundle,
    lease: {
      name: config.leaseName,
      durationSeconds: config.leaseDurationSeconds,
      renewIntervalMs: config.leaseRenewSeconds * 1000,
    },
    push: {
      debounceMs: config.pushDebounceMs,
      maxDebounceMs: config.pushMaxDebounceMs,
      resyncMs: config.resyncSeconds * 1000,
    },
    log,
    onPush: extras.onPush,
    onLeadershipChange: (leading) => {
      if (leading) void certificates?.trigger();
    },
  });
  const tls = { certFile: config.tlsCertFile, keyFile: config.tlsKeyFile };
  if (config.certsMode === 'self-managed') {
    certificates = new SelfManagedCertificates({
      kubeConfig,
      namespace: settings.injectorNamespace,
      secretName: config.certsSecretName,
      webhooks: config.certsWebhooks,
      policy: {
        dnsNames: serviceDnsNames(config.certsServices, settings.injectorNamespace),
        caLifetimeSeconds: config.certsCaLifetimeSeconds,
        servingLifetimeSeconds: config.certsServingLifetimeSeconds,
        renewFraction: config.certsRenewFraction,
      },
      files: tls,
      isLeader: () => controller.isLeader(),
      onCaBundle: (bundle) => caBundle.set(bundle),
      intervalMs: config.certsCheckSeconds * 1000,
      log,
    });
    try {
      // The servers read the pair at start: wait for the leader's Secret to reach the files.
      await certificates.ready();
      certificates.start();
    } catch (error) {
      certificates.close();
      closeCaBundle();
      await controller.stop();
      throw error;
    }
  }
  const core = kubeConfig.makeApiClient(CoreV1Api);
  let webhook: WebhookServer | undefined;
  let pull: PullServer | undefined;
  let approvals: ApprovalsApi | undefined;
  try {
    webhook = await startWebhookServer({
      settings,
      tls,
      host: config.host,
      port: config.webhookPort,
      namespaceLabels: async (name) => (await core.readNamespace({ name })).metadata?.labels ?? {},
      // From the API server, not the controller's informer: a pod the informer has
      // not seen yet would pass for one Veil did not inject.
      readPod: (namespace, name) => core.readNamespacedPod({ namespace, name }),
      bootstrapPolicy: (namespace, name) => controller.bootstrapPolicy(namespace, name),
      watchedNamespaces: config.namespaces,
      controllerTrust: () => currentTrust(key.publicJwk, caBundle),
      trustWriters,
      approvals: approvalStampSettings(config),
      log,
    });
    pull = await startPullServer({
      tls,
      host: config.host,
      port: config.pullPort,
      lookup: (namespace, name) => controller.lookup(namespace, name),
      authenticate: tokenReviewAuthenticator(kubeConfig.makeApiClient(AuthenticationV1Api)),
      certificates: {
        authority: key.authority,
        injectedPod: (namespace, name) => controller.injectedPod(namespace, name),
      },
      log,
    });
    approvals =
      config.approvalsPort === undefined
        ? undefined
        : await startApprovalsApi({
            kubeConfig,
            tls,
            host: config.host,
            port: config.approvalsPort,
            policy: (namespace, name) => controller.policy(namespace, name),
            policiesInSync: () => controller.policiesInSync(),
            authenticate: tokenReviewAuthenticator(kubeConfig.makeApiClient(AuthenticationV1Api)),
            log,
            keepForMs:
              config.approvalRetentionDays > 0 ? config.approvalRetentionDays * 86_400_000 : undefined,
          });
  } catch (error) {
    await pull?.close();
    await webhook?.close();
    certificates?.close();
    closeCaBundle();
    await controller.stop();
    throw error;
  }
  const servers = { webhook, pull, approvals };
  return {
    ...servers,
    controller,
    certificates,
    settings,
    async close(options) {
      certificates?.close();
      closeCaBundle();
      // Leadership first, so the next replica starts pushing while this one drains.
      await controller.stop(options);
      await Promise.all([servers.webhook.close(), servers.pull.close(), servers.approvals?.close()]);
    },
  };
}

/** Who the approvals webhook treats as the controller, and as the requester of a request. */
export function approvalStampSettings(config: InjectorConfig): ApprovalStampSettings {
  return {
    controllerUsernames: config.approvalControllers,
    requesterUsernamePrefixes: config.approvalRequesterPrefixes,
  };
}

async function readSettings(file: string): Promise<InjectionSettings> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new Error(`injection settings ${file} are not readable JSON: ${(error as Error).message}`);
  }
  const parsed = injectionSettingsSchema.safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(settings)'}: ${i.message}`);
    throw new Error(`invalid injection settings in ${file}: ${problems.join('; ')}`);
  }
  return parsed.data;
}

/**
 * Who this injector is to the API server: the only user the webhook lets change a
 * pod's trust annotations, as the leader does on a rotation. Asked, not
 * configured, so it is the identity the patches really carry.
 */
async function ownUsernames(kubeConfig: KubeConfig): Promise<string[]> {
  let review: V1SelfSubjectReview;
  try {
    review = await kubeConfig.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' },
    });
  } catch (error) {
    throw new Error(
      `cannot ask the API server who this injector is (a SelfSubjectReview, Kubernetes 1.28+): ${(error as Error).message}`,
    );
  }
  const username = review.status?.userInfo?.username;
  if (!username) throw new Error('the API server did not say who this injector is (SelfSubjectReview)');
  return [username];
}

function loadKubeConfig(file: string | undefined): KubeConfig {
  const kubeConfig = new KubeConfig();
  if (file === undefined) kubeConfig.loadFromDefault();
  else kubeConfig.loadFromFile(file);
  return kubeConfig;
}

async function main(): Promise<void> {
  const log = jsonLog('injector');
  let injector: RunningInjector;
  try {
    const config = parseInjectorConfig(process.argv.slice(2), process.env);
    injector = await startInjector(config, {
      log: config.logLevel === 'warn' ? { ...log, info: () => undefined } : log,
    });
    log.info('ready', {
      identity: config.identity,
      webhook: injector.webhook.url,
      pull: injector.pull.url,
    });
  } catch (error) {
    log.warn('cannot start', { error: (error as Error).message });
    process.exit(1);
  }
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    // A second signal means now.
    if (stopping) process.exit(1);
    stopping = true;
    log.info('stopping', { signal });
    injector.close().then(
      () => process.exit(0),
      (error) => {
        log.warn('unclean stop', { error: (error as Error).message });
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (import.meta.main) await main();
