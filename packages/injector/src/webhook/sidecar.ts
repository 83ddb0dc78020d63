// The injected proxy: its container, and the volumes it needs. The file names and
// environment variables here are the contract between the injector and the sidecar.
import type {
  V1Container,
  V1EnvVar,
  V1Probe,
  V1ResourceRequirements,
  V1Volume,
} from '@kubernetes/client-node';
import { DEFAULT_SPOOL_CAPACITY_BYTES, sidecarTuningToEnv } from '@veil/core';
import { type PodOptions, veilAnnotations } from './annotations.ts';
import type { InjectionSettings } from './settings.ts';
import type { Upstream } from './upstream.ts';

export const sidecarNames = {
  container: 'veil-proxy',
  /** The model's port once the proxy has taken its name over. */
  upstreamPort: 'veil-upstream',
  /** The proxy's port when the upstream port had no name to take over. */
  proxyPort: 'veil-proxy',
  adminPort: 'veil-admin',
} as const;

export const sidecarVolumeNames = {
  spool: 'veil-spool',
  state: 'veil-state',
  bootstrap: 'veil-bootstrap',
  controllerKey: 'veil-controller-key',
  hashKey: 'veil-hash-key',
  signingKey: 'veil-signing-key',
  controllerToken: 'veil-controller-token',
} as const;

const mountPaths = {
  spool: '/var/lib/veil/spool',
  state: '/var/lib/veil/state',
  bootstrap: '/etc/veil/bootstrap',
  controllerKey: '/etc/veil/controller-key',
  hashKey: '/etc/veil/hash-key',
  signingKey: '/var/run/veil/signing-key',
  controllerToken: '/var/run/veil/controller-token',
} as const;

const fileNames = {
  bootstrapPolicy: 'policy.json',
  controllerKey: 'jwk.json',
  controllerCa: 'ca.crt',
  hashKey: 'hash.key',
  signingKey: 'ed25519.jwk',
  controllerToken: 'token',
} as const;

/** The audience the controller's pull endpoint and approvals API ask a TokenReview for. */
export const controllerTokenAudience = 'veil-controller';
/** An hour; the kubelet rotates the file at 80% of it, and the sidecar reads it on every call. */
const controllerTokenSeconds = 3600;

/** Pod Security `restricted`, and a fixed non-root user the image is built for. */
const restrictedSecurityContext = {
  runAsNonRoot: true,
  runAsUser: 65_532,
  runAsGroup: 65_532,
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  capabilities: { drop: ['ALL'] },
  seccompProfile: { type: 'RuntimeDefault' },
};

export type SidecarSpec = {
  settings: InjectionSettings;
  options: PodOptions;
  upstream: Upstream;
  native: boolean;
};

export function sidecarContainer(spec: SidecarSpec): V1Container {
  const { settings } = spec;
  return {
    name: sidecarNames.container,
    image: settings.sidecarImage,
    imagePullPolicy: settings.imagePullPolicy,
    ...(spec.native ? { restartPolicy: 'Always' } : {}),
    ports: [
      {
        // Taking over the model's port name is what lets a Service with a named
        // targetPort reach the proxy instead of the model, with no change to it.
        name: spec.upstream.name ?? sidecarNames.proxyPort,
        containerPort: settings.proxyPort,
        protocol: 'TCP',
      },
      { name: sidecarNames.adminPort, containerPort: settings.adminPort, protocol: 'TCP' },
    ],
    env: sidecarEnv(spec),
    resources: sidecarResources(settings, spec.options),
    securityContext: restrictedSecurityContext,
    volumeMounts: [
      { name: sidecarVolumeNames.spool, mountPath: mountPaths.spool },
      { name: sidecarVolumeNames.state, mountPath: mountPaths.state },
      { name: sidecarVolumeNames.bootstrap, mountPath: mountPaths.bootstrap, readOnly: true },
      { name: sidecarVolumeNames.controllerKey, mountPath: mountPaths.controllerKey, readOnly: true },
      { name: sidecarVolumeNames.hashKey, mountPath: mountPaths.hashKey, readOnly: true },
      { name: sidecarVolumeNames.signingKey, mountPath: mountPaths.signingKey },
      { name: sidecarVolumeNames.controllerToken, mountPath: mountPaths.controllerToken, readOnly: true },
    ],
    // A native sidecar counts as started once its startup probe passes, and only then
    // does the kubelet start the model: the proxy is listening before anything else.
    startupProbe: adminProbe(settings, '/healthz', { periodSeconds: 1, failureThreshold: 120 }),
    readinessProbe: adminProbe(settings, '/readyz', { periodSeconds: 5, failureThreshold: 2 }),
    livenessProbe: adminProbe(settings, '/healthz', { periodSeconds: 10, failureThreshold: 3 }),
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
}

export function sidecarVolumes(settings: InjectionSettings): V1Volume[] {
  return [
    { name: sidecarVolumeNames.spool, emptyDir: {} },
    // The last good policy, kept across sidecar restarts so a pod keeps serving while
    // the controller is down.
    { name: sidecarVolumeNames.state, emptyDir: {} },
    {
      name: sidecarVolumeNames.bootstrap,
      downwardAPI: {
        items: [
          {
            path: fileNames.bootstrapPolicy,
            fieldRef: { fieldPath: `metadata.annotations['${veilAnnotations.bootstrapPolicy}']` },
          },
        ],
      },
    },
    controllerKeyVolume(),
    // The key is shared by every sidecar of the namespace, so a value masks to the
    // same token in each replica and across restarts, and an auditor holding it can
    // check the input digests. Optional: a namespace without the Secret still runs
    // its pods, each sidecar on a key of its own, and the sidecar warns about it.
    {
      name: sidecarVolumeNames.hashKey,
      secret: {
        secretName: settings.hashKey.secretName,
        items: [{ key: settings.hashKey.key, path: fileNames.hashKey }],
        optional: true,
      },
    },
    // The sidecar generates its own Ed25519 key here and publishes the public half in
    // its stream's genesis manifest, which is WORM-locked before any record is. The
    // private key never leaves the pod, and it outlives a container restart, so every
    // incarnation of the pod signs with it. The shipper state on the spool volume
    // keeps each stream's key too, so what a stream left in the spool can still be
    // signed once the memory is gone (a node reboot): see docs/security.md.
    { name: sidecarVolumeNames.signingKey, emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } },
    // The pod's own service-account token, bound to the pod and good for the
    // controller alone: the sidecar presents it when it pulls its policy and when it
    // opens an approval, and the controller asks the API server who it is. The pod's
    // default token (audience: the API server) is never what the sidecar sends.
    {
      name: sidecarVolumeNames.controllerToken,
      projected: {
        sources: [
          {
            serviceAccountToken: {
              audience: controllerTokenAudience,
              expirationSeconds: controllerTokenSeconds,
              path: fileNames.controllerToken,
            },
          },
        ],
      },
    },
  ];
}

// From the pod's own annotations, which only the injector writes (webhook/trust.ts):
// the kubelet rewrites the files when the controller patches them, so a rotation
// reaches a running sidecar. A missing annotation is an empty file, which the
// sidecar refuses to trust (fail closed).
function controllerKeyVolume(): V1Volume {
  const item = (path: string, annotation: string) => ({
    path,
    fieldRef: { fieldPath: `metadata.annotations['${annotation}']` },
  });
  return {
    name: sidecarVolumeNames.controllerKey,
    downwardAPI: {
      items: [
        item(fileNames.controllerKey, veilAnnotations.controllerKey),
        item(fileNames.controllerCa, veilAnnotations.controllerCa),
      ],
    },
  };
}

function sidecarEnv({ settings, options, upstream }: SidecarSpec): V1EnvVar[] {
  return [
    plain('VEIL_UPSTREAM', `http://127.0.0.1:${upstream.port}`),
    plain('VEIL_API', options.api),
    plain('VEIL_POLICY_NAME', options.policy),
    plain('VEIL_PROXY_PORT', String(settings.proxyPort)),
    plain('VEIL_ADMIN_PORT', String(settings.adminPort)),
    fromField('VEIL_POD_NAME', 'metadata.name'),
    fromField('VEIL_POD_NAMESPACE', 'metadata.namespace'),
    fromField('VEIL_POD_UID', 'metadata.uid'),
    plain('VEIL_CONTROLLER_URL', settings.controllerUrl),
    ...(settings.approvalsUrl === undefined ? [] : [plain('VEIL_APPROVALS_URL', settings.approvalsUrl)]),
    plain('VEIL_CONTROLLER_TOKEN_FILE', `${mountPaths.controllerToken}/${fileNames.controllerToken}`),
    plain('VEIL_CLUSTER', settings.cluster),
    plain('VEIL_SPOOL_DIR', mountPaths.spool),
    plain('VEIL_STATE_DIR', mountPaths.state),
    plain('VEIL_SIGNING_KEY_FILE', `${mountPaths.signingKey}/${fileNames.signingKey}`),
    plain('VEIL_CONTROLLER_KEY_FILE', `${mountPaths.controllerKey}/${fileNames.controllerKey}`),
    plain('VEIL_CONTROLLER_CA_FILE', `${mountPaths.controllerKey}/${fileNames.controllerCa}`),
    plain('VEIL_HASH_KEY_FILE', `${mountPaths.hashKey}/${fileNames.hashKey}`),
    plain('VEIL_BOOTSTRAP_POLICY_FILE', `${mountPaths.bootstrap}/${fileNames.bootstrapPolicy}`),
    ...s3Env(settings.s3),
    ...sidecarTuningToEnv(settings.tuning),
    ...Object.entries(settings.otelEnv).map(([name, value]) => plain(name, value)),
  ];
}

function s3Env(s3: InjectionSettings['s3']): V1EnvVar[] {
  if (s3 === undefined) return [];
  const env = [plain('VEIL_S3_BUCKET', s3.bucket), plain('VEIL_S3_REGION', s3.region)];
  if (s3.endpoint !== undefined) env.push(plain('VEIL_S3_ENDPOINT', s3.endpoint));
  env.push(plain('VEIL_S3_FORCE_PATH_STYLE', String(s3.forcePathStyle)));
  if (s3.prefix) env.push(plain('VEIL_S3_PREFIX', s3.prefix));
  const secret = s3.credentialsSecret;
  if (secret !== undefined) {
    // The standard AWS names, so the SDK's default chain picks them up unchanged.
    env.push(fromSecret('AWS_ACCESS_KEY_ID', secret.name, secret.accessKeyIdKey));
    env.push(fromSecret('AWS_SECRET_ACCESS_KEY', secret.name, secret.secretAccessKeyKey));
  }
  return env;
}

/** An override sets the request and, where the settings define one, the limit too. */
function sidecarResources(settings: InjectionSettings, options: PodOptions): V1ResourceRequirements {
  const { requests, limits } = settings.resources;
  const cpu = options.sidecarCpu;
  const memory = options.sidecarMemory;
  return {
    requests: {
      cpu: cpu ?? requests.cpu,
      memory: memory ?? requests.memory,
      'ephemeral-storage': spoolStorageRequest(settings),
    },
    limits: {
      ...(limits.cpu === undefined ? {} : { cpu: cpu ?? limits.cpu }),
      memory: memory ?? limits.memory,
    },
  };
}

/** The shipper's and the policy's state files, and room for the filesystem's own blocks. */
const spoolStateAllowanceMiB = 64;

// Under disk pressure the kubelet evicts first the pods using more ephemeral storage
// than they request, and eviction deletes the spool's unshipped records. Requesting
// what a full spool holds keeps the spool alone from putting the pod in that first
// rank (the model's own disk use still counts against the pod). Never a
// limit or an emptyDir sizeLimit: going over either evicts the pod itself.
function spoolStorageRequest(settings: InjectionSettings): string {
  const capacity = settings.tuning.spoolCapacityBytes ?? DEFAULT_SPOOL_CAPACITY_BYTES;
  return `${Math.ceil(capacity / (1024 * 1024)) + spoolStateAllowanceMiB}Mi`;
}

// The admin port serves plain HTTP on the pod network: a policy push is
// authenticated by its signed, pod-bound, minute-long token, not by the transport
// (docs/security.md), and the kubelet probes it the same way.
function adminProbe(
  settings: InjectionSettings,
  path: string,
  timing: { periodSeconds: number; failureThreshold: number },
): V1Probe {
  return { httpGet: { path, port: settings.adminPort, scheme: 'HTTP' }, timeoutSeconds: 2, ...timing };
}

function plain(name: string, value: string): V1EnvVar {
  return { name, value };
}

function fromField(name: string, fieldPath: string): V1EnvVar {
  return { name, valueFrom: { fieldRef: { fieldPath } } };
}

function fromSecret(name: string, secretName: string, key: string): V1EnvVar {
  return { name, valueFrom: { secretKeyRef: { name: secretName, key } } };
}
