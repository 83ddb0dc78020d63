// What the injector needs to know to build a sidecar: one zod schema, parsed once at
// start, so a bad deployment fails before it admits a single pod.
import {
  hasUserinfo,
  nonBlank,
  s3BucketName,
  s3EndpointUrl,
  s3KeyPrefix,
  sidecarTuningSchema,
} from '@veil/core';
import { z } from 'zod';
import { dataKey, dnsLabel, dnsSubdomain, portNumber } from './names.ts';
import { cpuMillicores, cpuQuantity, memoryBytes, memoryQuantity } from './quantity.ts';

/** The data key, beside the public JWK, of the CA bundle sidecars verify the controller's certificate by. */
export const controllerCaKey = 'ca.crt';

const controllerKeySchema = z
  .object({
    source: z.enum(['configMap', 'secret']).default('configMap'),
    name: dnsSubdomain.default('veil-controller-key'),
    key: dataKey.default('jwk.json').refine((key) => key !== controllerCaKey, {
      message: `${controllerCaKey} holds the controller's CA bundle`,
    }),
  })
  .strict()
  .describe(
    `Where the controller publishes a copy of its public JWK, with its serving CA bundle under \`${controllerCaKey}\` (a Secret source is never written). Sidecars do not trust it: a namespace's editors can write it. Each injected pod carries the key and the bundle in its \`veil.dev/controller-key\` and \`veil.dev/controller-ca\` annotations instead, which only the injector changes. The copy stays for pods injected by earlier releases, which mount it until they are restarted.`,
  );

const hashKeySchema = z
  .object({
    secretName: dnsSubdomain.default('veil-hash-key'),
    key: dataKey.default('key'),
  })
  .strict()
  .describe(
    "The Secret, in each injected pod's own namespace, holding the key of masking `hash` tokens, of the input digests in audit records and of approval payload digests (at least 16 bytes; 32 random bytes recommended). Every sidecar of a namespace then makes the same token for the same value, across replicas and restarts, and an auditor given the key can check a digest. Optional: without the Secret a pod still starts, with a key of its sidecar process only, and says so in its log and its `veil_shared_hash_key` gauge.",
  );

const s3CredentialsSchema = z
  .object({
    name: dnsSubdomain,
    accessKeyIdKey: dataKey.default('AWS_ACCESS_KEY_ID'),
    secretAccessKeyKey: dataKey.default('AWS_SECRET_ACCESS_KEY'),
  })
  .strict()
  .describe('A Secret present in each injected namespace; without it the AWS SDK default chain applies');

const s3Schema = z
  .object({
    bucket: s3BucketName,
    region: nonBlank.default('us-east-1'),
    endpoint: s3EndpointUrl.optional().describe('S3-compatible endpoint such as MinIO; AWS when absent'),
    forcePathStyle: z.boolean().default(false),
    prefix: s3KeyPrefix
      .optional()
      .describe('Put before every evidence key (a `/` is added when missing); auditors pull with --prefix'),
    credentialsSecret: s3CredentialsSchema.optional(),
  })
  .strict();

/** The OpenTelemetry SDK's own variables, passed to every sidecar as they are. */
const otelEnvSchema = z
  .record(z.string().regex(/^OTEL_[A-Z0-9_]+$/, 'must be an OTEL_* variable'), z.string())
  .describe(
    'Standard OTEL_* variables for the sidecars, such as OTEL_TRACES_EXPORTER and OTEL_EXPORTER_OTLP_ENDPOINT: traces are exported only when an exporter is named',
  );

const resourceAmountsSchema = z
  .object({
    requests: z
      .object({ cpu: cpuQuantity.default('50m'), memory: memoryQuantity.default('128Mi') })
      .strict()
      .prefault({}),
    limits: z
      .object({ cpu: cpuQuantity.optional(), memory: memoryQuantity.default('256Mi') })
      .strict()
      .prefault({}),
  })
  .strict();

// The API server refuses a pod whose request exceeds its limit: caught here, at
// start, rather than as every opted-in pod being rejected.
const resourcesSchema = resourceAmountsSchema.superRefine(({ requests, limits }, context) => {
  const over = (what: string, key: 'cpu' | 'memory') =>
    context.addIssue({
      code: 'custom',
      path: ['requests', key],
      message: `the ${what} request (${requests[key]}) must be at most the ${what} limit (${limits[key]}): the API server refuses a pod whose request exceeds its limit`,
    });
  if (limits.cpu !== undefined && cpuMillicores(requests.cpu) > cpuMillicores(limits.cpu)) over('CPU', 'cpu');
  if (memoryBytes(requests.memory) > memoryBytes(limits.memory)) over('memory', 'memory');
});

/** The controller over https; user information would hide the host it names, as the sidecar refuses. */
const controllerEndpoint = z
  .url({ protocol: /^https$/ })
  .refine((value) => !hasUserinfo(value), 'must not carry user information');

export const injectionSettingsSchema = z
  .object({
    sidecarImage: z.string().min(1).describe('The veil-sidecar image, pinned by tag or digest'),
    sidecarVersion: z.string().min(1).describe('Recorded in veil.dev/status'),
    imagePullPolicy: z.enum(['Always', 'IfNotPresent', 'Never']).default('IfNotPresent'),
    injectorNamespace: dnsLabel.describe('Never injected, nor is kube-system'),
    networkPolicyNamespaces: z
      .array(dnsLabel)
      .optional()
      .describe(
        'Where the chart made its NetworkPolicy (workloadNamespaces, with networkPolicy.enabled): a pod injected elsewhere is warned that its model can be reached around the proxy. Unset: no warning',
      ),
    excludedNamespaces: z
      .array(dnsLabel)
      .default([])
      .describe(
        "Never injected either (the chart's webhook.excludeNamespaces): the webhooks do not see their pods, so the controller trusts no pod there as injected",
      ),
    nativeSidecars: z
      .boolean()
      .default(true)
      .describe(
        'Inject an init container with restartPolicy Always (Kubernetes 1.29+). Services resolve a named targetPort on a native sidecar only from 1.32 (kubernetes#127958): on 1.29 to 1.31 turn this off or target the proxy port by number.',
      ),
    proxyPort: portNumber.default(15_080),
    adminPort: portNumber.default(15_090),
    controllerUrl: controllerEndpoint.describe(
      "Where a sidecar pulls its policy: the controller's pull endpoint (8444 in the chart)",
    ),
    approvalsUrl: controllerEndpoint
      .optional()
      .describe(
        "The controller's approvals API (8445 in the chart); unset, requests an approval rule holds get 503",
      ),
    cluster: dnsLabel.describe('Cluster name, the first segment of every evidence object key'),
    controllerKey: controllerKeySchema.prefault({}),
    hashKey: hashKeySchema.prefault({}),
    s3: s3Schema.optional().describe('Evidence storage; absent, the sidecar keeps its audit spool local'),
    resources: resourcesSchema.prefault({}),
    otelEnv: otelEnvSchema.default({}),
    tuning: sidecarTuningSchema
      .prefault({})
      .describe(
        "Timeouts and audit spool settings written into every sidecar's environment; unset: the sidecar's defaults",
      ),
  })
  .strict()
  .refine((s) => s.proxyPort !== s.adminPort, {
    message: 'proxyPort and adminPort differ',
    path: ['adminPort'],
  })
  .superRefine(({ tuning, resources }, context) => {
    const { bodyMemoryBytes } = tuning;
    if (bodyMemoryBytes === undefined) return;
    const limit = resources.limits.memory;
    if (bodyMemoryBytes < memoryBytes(limit)) return;
    context.addIssue({
      code: 'custom',
      path: ['tuning', 'bodyMemoryBytes'],
      message: `tuning.bodyMemoryBytes (${bodyMemoryBytes}) must be below resources.limits.memory (${limit}): bodies held up to it would get every sidecar OOM-killed`,
    });
  });

export type InjectionSettings = z.infer<typeof injectionSettingsSchema>;
export type InjectionSettingsInput = z.input<typeof injectionSettingsSchema>;
