// The injector (webhook, controller, pull endpoint) run in-process against the
// real API server, with what a deployment would mount: settings.json, the
// controller's private JWK and a serving certificate signed by the cluster CA.
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AdmissionregistrationV1Api, CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import {
  generateControllerJwk,
  type InjectionSettingsInput,
  type InjectorConfig,
  type InjectorExtras,
  injectorConfigSchema,
  type RunningInjector,
  startInjector,
} from '@veil/injector';
import type { ControlPlane } from '../../../harness/index.ts';
import { eventually } from './cluster.ts';

export const injectorNamespace = 'veil-system';

export type InjectorFiles = {
  settingsFile: string;
  signingKeyFile: string;
  tlsCertFile: string;
  tlsKeyFile: string;
};

/** Writes the files an injector replica mounts; replicas share them, as a Deployment's pods do. */
export async function injectorFiles(
  cp: ControlPlane,
  settings: Partial<InjectionSettingsInput> = {},
): Promise<InjectorFiles> {
  const id = randomBytes(4).toString('hex');
  const settingsFile = join(cp.dir, `injector-settings-${id}.json`);
  const signingKeyFile = join(cp.dir, `controller-key-${id}.json`);
  const full: InjectionSettingsInput = {
    sidecarImage: 'registry.example.com/veil/veil-sidecar:0.1.0',
    sidecarVersion: '0.1.0',
    injectorNamespace,
    controllerUrl: `https://veil-injector.${injectorNamespace}.svc:8444`,
    cluster: 'e2e',
    ...settings,
  };
  await writeFile(settingsFile, JSON.stringify(full));
  await writeFile(signingKeyFile, JSON.stringify(await generateControllerJwk()), { mode: 0o600 });
  const cert = await cp.issueServingCert(`injector-${id}`);
  return { settingsFile, signingKeyFile, tlsCertFile: cert.cert, tlsKeyFile: cert.key };
}

/** The namespace the Lease lives in; created once per control plane. */
export async function ensureInjectorNamespace(cp: ControlPlane): Promise<void> {
  const core = cp.kubeConfig().makeApiClient(CoreV1Api);
  try {
    await core.createNamespace({ body: { metadata: { name: injectorNamespace } } });
  } catch (error) {
    if ((error as { code?: number }).code !== 409) throw error;
  }
}

export function injectorConfig(
  files: InjectorFiles,
  overrides: Record<string, string | number> = {},
): InjectorConfig {
  return injectorConfigSchema.parse({
    ...files,
    host: '127.0.0.1',
    webhookPort: 0,
    pullPort: 0,
    identity: `injector-${randomBytes(3).toString('hex')}`,
    // Short, so tests see elections within seconds.
    leaseDurationSeconds: 2,
    leaseRenewSeconds: 0.5,
    ...overrides,
  });
}

export async function startTestInjector(
  cp: ControlPlane,
  files: InjectorFiles,
  overrides: Record<string, string | number> = {},
  extras: InjectorExtras = {},
): Promise<RunningInjector> {
  return startInjector(injectorConfig(files, overrides), {
    kubeConfig: cp.kubeConfig(),
    log: {
      info: () => undefined,
      warn: (message, fields) => console.log('injector:', message, fields ?? {}),
    },
    ...extras,
  });
}

/**
 * The MutatingWebhookConfiguration the chart installs (charts/veil/templates/
 * webhooks.yaml), pointed at a URL: opt-in by annotation through a CEL match
 * condition, by namespace label through a selector, never the injector's own
 * namespace or kube-system; the guard on injected pods, exec and attach into
 * the sidecar, and bindings carrying Veil's keys; failurePolicy Fail.
 */
export async function registerWebhook(cp: ControlPlane, webhookUrl: string): Promise<string> {
  const name = `veil-injector-${randomBytes(3).toString('hex')}`;
  const clientConfig = {
    url: `${webhookUrl}/mutate-pods`,
    caBundle: (await readFile(cp.caCert)).toString('base64'),
  };
  const common = {
    admissionReviewVersions: ['v1'],
    sideEffects: 'None',
    failurePolicy: 'Fail',
    reinvocationPolicy: 'Never',
    matchPolicy: 'Equivalent',
    timeoutSeconds: 10,
    clientConfig,
  };
  const rule = (operation: string) => ({
    apiGroups: [''],
    apiVersions: ['v1'],
    resources: ['pods'],
    scope: 'Namespaced',
    operations: [operation],
  });
  const notExcluded = {
    key: 'kubernetes.io/metadata.name',
    operator: 'NotIn',
    values: ['kube-system', injectorNamespace],
  };
  await cp
    .kubeConfig()
    .makeApiClient(AdmissionregistrationV1Api)
    .createMutatingWebhookConfiguration({
      body: {
        metadata: { name },
        webhooks: [
          {
            ...common,
            name: 'inject.pods.veil.dev',
            rules: [rule('CREATE')],
            namespaceSelector: { matchExpressions: [notExcluded] },
            matchConditions: [
              {
                name: 'annotated',
                expression:
                  "has(object.metadata.annotations) && 'veil.dev/inject' in object.metadata.annotations && object.metadata.annotations['veil.dev/inject'] != 'false'",
              },
            ],
          },
          {
            ...common,
            name: 'namespace.pods.veil.dev',
            rules: [rule('CREATE')],
            namespaceSelector: {
              matchExpressions: [
                { key: 'veil.dev/injection', operator: 'In', values: ['enabled'] },
                notExcluded,
              ],
            },
            matchConditions: [
              {
                name: 'not-annotated',
                expression:
                  "!has(object.metadata.annotations) || !('veil.dev/inject' in object.metadata.annotations)",
              },
            ],
          },
          {
            ...common,
            name: 'guard.pods.veil.dev',
            rules: [
              {
                ...rule('CREATE'),
                operations: ['CREATE', 'UPDATE'],
                resources: ['pods', 'pods/status', 'pods/ephemeralcontainers'],
              },
            ],
            namespaceSelector: { matchExpressions: [notExcluded] },
            objectSelector: { matchLabels: { 'veil.dev/injected': 'true' } },
            // As the chart's: status writes reach the guard only when they change labels or annotations.
            matchConditions: [
              {
                name: 'metadata-changed',
                expression:
                  "!has(request.subResource) || request.subResource != 'status' || " +
                  '(has(object.metadata.labels) ? object.metadata.labels : {}) != ' +
                  '(has(oldObject.metadata.labels) ? oldObject.metadata.labels : {}) || ' +
                  '(has(object.metadata.annotations) ? object.metadata.annotations : {}) != ' +
                  '(has(oldObject.metadata.annotations) ? oldObject.metadata.annotations : {})',
              },
            ],
          },
          {
            ...common,
            name: 'exec.pods.veil.dev',
            rules: [{ ...rule('CONNECT'), resources: ['pods/exec', 'pods/attach'] }],
            namespaceSelector: { matchExpressions: [notExcluded] },
            matchConditions: [
              {
                name: 'sidecar-or-default',
                expression:
                  "!has(object.container) || object.container == '' || object.container == 'veil-proxy'",
              },
            ],
          },
          {
            ...common,
            name: 'binding.pods.veil.dev',
            rules: [{ ...rule('CREATE'), resources: ['pods/binding', 'bindings'] }],
            namespaceSelector: { matchExpressions: [notExcluded] },
            matchConditions: [
              {
                name: 'veil-keys',
                expression:
                  "(has(object.metadata.labels) && object.metadata.labels.exists(k, k.startsWith('veil.dev/'))) || " +
                  "(has(object.metadata.annotations) && object.metadata.annotations.exists(k, k.startsWith('veil.dev/')))",
              },
            ],
          },
        ],
      },
    });
  return name;
}

export async function deleteWebhook(cp: ControlPlane, name: string): Promise<void> {
  await cp
    .kubeConfig()
    .makeApiClient(AdmissionregistrationV1Api)
    .deleteMutatingWebhookConfiguration({ name });
}

/**
 * A model pod as a Deployment would create it. It names its service account
 * because the test API server runs without the ServiceAccount admission
 * plugin, which fills it in on a real cluster (the injected projected token
 * needs it).
 */
export function modelPod(name: string, annotations: Record<string, string> = {}): V1Pod {
  return {
    metadata: { name, annotations },
    spec: {
      serviceAccountName: 'default',
      containers: [
        { name: 'model', image: 'example.invalid/model:1', ports: [{ name: 'http', containerPort: 8080 }] },
      ],
    },
  };
}

/**
 * The API server picks a new webhook configuration up after a moment: creates
 * throwaway annotated pods until one comes back injected.
 */
export async function waitForWebhook(cp: ControlPlane, namespace: string): Promise<void> {
  const core = cp.kubeConfig().makeApiClient(CoreV1Api);
  let attempt = 0;
  await eventually(
    'the webhook to inject',
    async () => {
      const name = `webhook-probe-${attempt++}`;
      const stored = await core.createNamespacedPod({
        namespace,
        body: modelPod(name, { 'veil.dev/inject': 'true' }),
      });
      await core.deleteNamespacedPod({ name, namespace, gracePeriodSeconds: 0 });
      return stored.metadata?.labels?.['veil.dev/injected'] === 'true' ? true : undefined;
    },
    30_000,
    200,
  );
}
