import {
  hasUserinfo,
  isTrustedUrl,
  nonBlank,
  requestAboveBodyTimeout,
  s3BucketName,
  s3EndpointUrl,
  s3KeyPrefix,
  sidecarTuningEnv,
  sidecarTuningFromEnv,
  sidecarTuningSchema,
  wholeNumber,
} from '@veil/core';
import { z } from 'zod';

const port = wholeNumber(0, 65_535);

/**
 * The controller serves its pull endpoint and approvals API over HTTPS only, and the
 * sidecar sends its service-account token there: plain http is for a controller on
 * loopback (development and tests), never across the pod network.
 */
const controllerEndpoint = z
  .url({ protocol: /^https?$/ })
  // `http://localhost:1@evil.example/` names the host evil.example: userinfo only hides where a URL goes.
  .refine((value) => !hasUserinfo(value), 'must not carry user information')
  .refine(isTrustedUrl, 'must be https (plain http only on loopback)');

/** The sidecar's settings, each alone. */
const sidecarConfigFields = z.object({
  upstream: z
    .url({ protocol: /^https?$/ })
    // Each caller's own path (/v1/embeddings, /embed…) goes to the model's origin, which has
    // no path of its own. What is no URL at all is z.url()'s to report.
    .refine((value) => {
      const url = URL.parse(value);
      return url === null || (url.pathname === '/' && url.search === '' && url.hash === '');
    }, "must be the model's origin (http://host:port), without a path, query or fragment")
    .describe('The model on loopback, e.g. http://127.0.0.1:8000'),
  api: z.enum(['openai', 'tei', 'ollama', 'cohere', 'auto']).default('auto'),
  host: nonBlank.default('0.0.0.0'),
  // 0 asks the system for a free port: tests and `veil dev` listen so.
  proxyPort: port.default(15080),
  adminHost: nonBlank.default('0.0.0.0'),
  adminPort: port.default(15090),
  policyName: nonBlank.default('default'),
  bootstrapPolicyFile: z.string().optional(),
  stateDir: z.string().optional().describe('Where the last good policy is kept'),
  auditDir: z.string().optional().describe('Local evidence directory when no S3 bucket is set'),
  controllerKeyFile: z
    .string()
    .optional()
    .describe(
      "The controller's public JWK, for policy pushes; re-read on each push. Injected: the pod's veil.dev/controller-key annotation, which only the injector changes",
    ),
  controllerUrl: controllerEndpoint
    .optional()
    .describe(
      "The controller's policy pull endpoint, which also certifies the admin port for pushes; unset: no pull and no pushes, the last good or bootstrap policy serves",
    ),
  approvalsUrl: controllerEndpoint
    .optional()
    .describe("The controller's approvals API; unset: requests an approval rule holds get 503"),
  controllerTokenFile: z
    .string()
    .min(1)
    .optional()
    .describe('Projected service-account token (audience veil-controller); re-read on each call'),
  controllerCaFile: z
    .string()
    .min(1)
    .optional()
    .describe(
      "CA bundle for the controller's certificate; re-read on each call. Injected: the pod's veil.dev/controller-ca annotation, which only the injector changes",
    ),
  hashKeyFile: z
    .string()
    .optional()
    .describe(
      "Key (at least 16 bytes) for masking `hash` tokens and input digests, shared by a workload's sidecars; missing: a key of this process only, with a warning; unset: the same, silently",
    ),
  defaultModel: nonBlank.default('default'),
  ...sidecarTuningSchema.shape,
  pod: z
    .object({ namespace: z.string().min(1), name: z.string().min(1), uid: z.string().min(1) })
    .default({ namespace: 'local', name: 'veil-dev', uid: 'local' }),
  cluster: z
    .string()
    .regex(
      /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/,
      'must be a plain path segment (it names the evidence stream)',
    )
    .default('local'),
  s3Endpoint: s3EndpointUrl.optional().describe('S3-compatible endpoint; the AWS default when unset'),
  s3Bucket: s3BucketName.optional().describe('Evidence bucket (Object Lock enabled); none: auditDir'),
  s3Region: nonBlank.optional(),
  s3ForcePathStyle: z.boolean().optional().describe('Path-style bucket URLs (most S3-compatible servers)'),
  s3Prefix: s3KeyPrefix.optional().describe('Put before every evidence key in the bucket'),
  spoolDir: z.string().optional().describe('Durable audit spool; default: `spool` next to auditDir'),
  // The longest retentionDays a policy may ask for.
  retentionSeconds: wholeNumber(1, 36_500 * 86_400)
    .optional()
    .describe("Object Lock retention, overriding the policy's retentionDays (tests)"),
  signingKeyFile: z.string().optional().describe('Ed25519 private JWK signing the manifests; else generated'),
});

/** The sidecar's settings, read from the environment the injector writes. */
export const sidecarConfigSchema = sidecarConfigFields.refine(
  // Both 0 is two free ports the system picks; one fixed number cannot serve both.
  (c) => c.proxyPort === 0 || c.proxyPort !== c.adminPort,
  { message: 'proxyPort and adminPort must differ', path: ['adminPort'] },
);

export type SidecarConfig = z.infer<typeof sidecarConfigSchema>;
export type SidecarConfigInput = z.input<typeof sidecarConfigSchema>;

/** The environment variable that carries each setting read from one (the tuning's are core's). */
const configEnv = {
  upstream: 'VEIL_UPSTREAM',
  api: 'VEIL_API',
  host: 'VEIL_HOST',
  proxyPort: 'VEIL_PROXY_PORT',
  adminHost: 'VEIL_ADMIN_HOST',
  adminPort: 'VEIL_ADMIN_PORT',
  policyName: 'VEIL_POLICY_NAME',
  bootstrapPolicyFile: 'VEIL_BOOTSTRAP_POLICY_FILE',
  stateDir: 'VEIL_STATE_DIR',
  auditDir: 'VEIL_AUDIT_DIR',
  controllerKeyFile: 'VEIL_CONTROLLER_KEY_FILE',
  controllerUrl: 'VEIL_CONTROLLER_URL',
  approvalsUrl: 'VEIL_APPROVALS_URL',
  controllerTokenFile: 'VEIL_CONTROLLER_TOKEN_FILE',
  controllerCaFile: 'VEIL_CONTROLLER_CA_FILE',
  hashKeyFile: 'VEIL_HASH_KEY_FILE',
  defaultModel: 'VEIL_DEFAULT_MODEL',
  cluster: 'VEIL_CLUSTER',
  s3Endpoint: 'VEIL_S3_ENDPOINT',
  s3Bucket: 'VEIL_S3_BUCKET',
  s3Region: 'VEIL_S3_REGION',
  s3ForcePathStyle: 'VEIL_S3_FORCE_PATH_STYLE',
  s3Prefix: 'VEIL_S3_PREFIX',
  spoolDir: 'VEIL_SPOOL_DIR',
  retentionSeconds: 'VEIL_RETENTION_SECONDS',
  signingKeyFile: 'VEIL_SIGNING_KEY_FILE',
} as const satisfies Partial<Record<keyof SidecarConfig, string>>;

const variableOf: Readonly<Record<string, string>> = { ...configEnv, ...sidecarTuningEnv };

/**
 * What the environment must hold beyond each setting alone. Not part of
 * `sidecarConfigSchema`, which tests use to set up what no environment may
 * (a request timeout below the body timeout, to reach Node's backstop).
 */
const envConfigSchema = sidecarConfigSchema.superRefine(
  requestAboveBodyTimeout((key) => sidecarTuningEnv[key]),
);

export function configFromEnv(env: NodeJS.ProcessEnv): SidecarConfig {
  const raw: Record<string, unknown> = {};
  for (const [key, variable] of Object.entries(configEnv)) raw[key] = env[variable] || undefined;
  const parsed = envConfigSchema.safeParse({
    ...raw,
    ...sidecarTuningFromEnv(env),
    s3ForcePathStyle: flag(env.VEIL_S3_FORCE_PATH_STYLE),
    pod: podFromEnv(env),
  });
  if (!parsed.success) {
    const problems = parsed.error.issues.map(describeIssue).join('; ');
    throw new Error(`invalid sidecar configuration: ${problems}`);
  }
  return parsed.data;
}

/** The issue under the variable that carries the bad setting, and the setting's name; never its value. */
function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.path.length === 0) return issue.message;
  const setting = issue.path.join('.');
  const variable = variableOf[String(issue.path[0])];
  return `${variable === undefined ? setting : `${variable} (${setting})`}: ${issue.message}`;
}

/**
 * The pod, from all three of its variables, or the local default from none.
 * One or two alone is a broken injection: the default would give every such
 * pod one stream name and one push audience, so it is refused.
 */
function podFromEnv(env: NodeJS.ProcessEnv): { namespace: string; name: string; uid: string } | undefined {
  const { VEIL_POD_NAMESPACE: namespace, VEIL_POD_NAME: name, VEIL_POD_UID: uid } = env;
  if (namespace && name && uid) return { namespace, name, uid };
  if (!namespace && !name && !uid) return undefined;
  const missing = Object.entries({ VEIL_POD_NAMESPACE: namespace, VEIL_POD_NAME: name, VEIL_POD_UID: uid })
    .filter(([, value]) => !value)
    .map(([variable]) => variable);
  throw new Error(
    `invalid sidecar configuration: ${missing.join(', ')} must be set with the other pod variables`,
  );
}

/**
 * What an evidence bucket's settings allow that they should not, said once at
 * start: neither is refused, a kind cluster's MinIO is plain http and tests
 * need short retention.
 */
export function evidenceStoreWarnings(config: SidecarConfig): string[] {
  if (!config.s3Bucket) return [];
  const warnings: string[] = [];
  if (config.s3Endpoint !== undefined && !isTrustedUrl(config.s3Endpoint)) {
    warnings.push(
      `${configEnv.s3Endpoint} is plain http to a host off loopback: anyone on the path can read the evidence and forge the upload acknowledgements on which records leave the spool`,
    );
  }
  if (config.retentionSeconds !== undefined) {
    warnings.push(
      `${configEnv.retentionSeconds} is set: it overrides the policy's retentionDays in the bucket's Object Lock (it is meant for tests)`,
    );
  }
  return warnings;
}

/** `true`/`1` and `false`/`0`; anything else is left to fail validation rather than guessed. */
function flag(value: string | undefined): boolean | string | undefined {
  if (!value) return undefined;
  if (value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  return value;
}
