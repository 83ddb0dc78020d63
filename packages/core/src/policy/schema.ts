// The EmbeddingPolicy spec, v1alpha1. This zod schema is the single source of
// truth: the CRD's OpenAPI schema is generated from it, the controller and the
// sidecar validate with it, and `veil policy lint` reports its errors.
import { z } from 'zod';
import { maskingRuleProblems } from '../masking/patterns.ts';
import { embeddingRouteProblem } from './routes.ts';

const name = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a DNS label: lower-case letters, digits and "-"');

/** Glob over model names: `*` matches any run of characters. */
const modelPattern = z.string().min(1).max(253);

const loopbackHosts = new Set(['127.0.0.1', 'localhost', '[::1]']);

/**
 * The one rule for URLs that credentials or signing keys travel over: https, or
 * plain http on loopback only (development and tests), never across the network.
 */
export function isTrustedTransport(url: URL): boolean {
  if (url.protocol === 'https:') return true;
  return url.protocol === 'http:' && loopbackHosts.has(url.hostname);
}

/** Judges the host the URL parser sees: a pattern over the raw text can be fooled by userinfo. */
export function isTrustedUrl(value: string): boolean {
  const url = URL.parse(value);
  return url !== null && isTrustedTransport(url);
}

/** An issuer's key source, or key set, read over plain http on loopback. */
export interface LoopbackKeySource {
  /** The field naming it, from the spec down: `authentication.oidc.0.issuer`. */
  readonly path: string;
  /** The issuer whose tokens the keys verify. */
  readonly issuer: string;
  /** Where the keys are read from, origin and path: a key set's query stays out of logs. */
  readonly url: string;
}

/** Why a key source on loopback is for `veil dev` and tests only. */
export const LOOPBACK_KEYS_RISK =
  "plain http on loopback is for veil dev and tests: in a pod, the model container shares the sidecar's loopback, so it could serve its own key set there and mint tokens for any identity; use https";

/**
 * Where each issuer's keys are read from, when that is plain http on loopback:
 * the key set's URL when set, else the issuer's (discovery). An issuer on
 * loopback whose keys come from elsewhere is only compared to `iss`.
 */
export function loopbackKeySources(authentication: PolicySpec['authentication']): LoopbackKeySource[] {
  const sources: { path: string; issuer: string; jwksUri?: string | undefined }[] = [
    ...authentication.oidc.map((oidc, i) => ({ ...oidc, path: `authentication.oidc.${i}` })),
    ...(authentication.serviceAccountTokens
      ? [{ ...authentication.serviceAccountTokens, path: 'authentication.serviceAccountTokens' }]
      : []),
  ];
  return sources.flatMap(({ path, issuer, jwksUri }) => {
    const field = jwksUri === undefined ? 'issuer' : 'jwksUri';
    const url = URL.parse(jwksUri ?? issuer);
    if (url === null || url.protocol !== 'http:' || !loopbackHosts.has(url.hostname)) return [];
    return [{ path: `${path}.${field}`, issuer, url: `${url.origin}${url.pathname}` }];
  });
}

const httpsUrl = z.string().url().refine(isTrustedUrl, {
  message: 'must be https (plain http is allowed only on loopback)',
});

/**
 * An issuer is compared to `iss` as written and has discovery appended to its
 * path, and its URLs go into every refused request's record: credentials there
 * would be copied into records, and a query or fragment would swallow the
 * discovery path. A key set's URL is only fetched: a query may select the key
 * set (Azure AD B2C names its policy so), a fragment is never sent.
 */
function urlPartsProblem(value: string, query: 'refused' | 'allowed'): string | undefined {
  const url = URL.parse(value);
  if (url === null) return undefined;
  if (url.username !== '' || url.password !== '')
    return 'must not carry a username or password: credentials would be copied into audit records';
  // An empty query or fragment (a bare "?" or "#") parses to "", yet is in the text.
  const fragment = url.hash !== '' || value.includes('#');
  if (query === 'allowed') return fragment ? 'must not have a fragment' : undefined;
  return fragment || url.search !== '' || value.includes('?')
    ? 'must not have a query or fragment'
    : undefined;
}

function urlWithout(query: 'refused' | 'allowed') {
  return httpsUrl.superRefine((value, ctx) => {
    const problem = urlPartsProblem(value, query);
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
  });
}

/** An issuer's URL: trusted transport, and nothing but scheme, host and path. */
const issuerUrl = urlWithout('refused');
/** A key set's URL: trusted transport, no credentials, no fragment. */
const jwksUrl = urlWithout('allowed');

/**
 * IdPs name claims with URLs, dots included, so a claim name is never split
 * into a path; a dotted name that is no URL (Keycloak's `realm_access.roles`)
 * means a path, would match no claim and leave every caller without groups.
 */
function isLiteralClaimName(claim: string): boolean {
  return !claim.includes('.') || /^[a-z][a-z0-9+.-]*:\/\//i.test(claim);
}

export const jwtAlgorithms = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'EdDSA',
] as const;

export const oidcIssuerSchema = z
  .object({
    issuer: issuerUrl.describe(
      'Issuer URL; discovery is read from <issuer>/.well-known/openid-configuration',
    ),
    audiences: z.array(z.string().min(1)).min(1).describe('Accepted `aud` values'),
    groupsClaim: z
      .string()
      .min(1)
      .refine(isLiteralClaimName, {
        message:
          'must name a top-level claim: a dotted name other than a URL, such as realm_access.roles, is a nested path and is not read; map the groups to a top-level claim at the IdP',
      })
      .default('groups')
      .describe('Claim holding the caller groups'),
    jwksUri: jwksUrl.optional().describe('Overrides the jwks_uri found by discovery'),
    algorithms: z
      .array(z.enum(jwtAlgorithms))
      .min(1)
      .default(['RS256', 'ES256', 'EdDSA'])
      .describe('Allowed signing algorithms; never none, never HMAC'),
  })
  .strict();

export const serviceAccountAuthSchema = z
  .object({
    issuer: z.string().min(1).default('https://kubernetes.default.svc.cluster.local'),
    audiences: z.array(z.string().min(1)).min(1).default(['veil']),
    jwksUri: jwksUrl.optional().describe('Defaults to the API server issuer discovery'),
  })
  .strict()
  // Without jwksUri the sidecar finds the keys by discovery at the issuer, so the
  // issuer must be a URL it can reach; lint refuses here what every sidecar would.
  // One that need not be a URL (with jwksUri) is held to an issuer URL's rules when it is one.
  .superRefine((serviceAccounts, ctx) => {
    const problem =
      serviceAccounts.jwksUri === undefined && !isTrustedUrl(serviceAccounts.issuer)
        ? 'must be an https URL (plain http only on loopback) to discover keys from; or set jwksUri'
        : urlPartsProblem(serviceAccounts.issuer, 'refused');
    if (problem !== undefined) ctx.addIssue({ code: 'custom', path: ['issuer'], message: problem });
  });

/** Indexes of the values an earlier one already took. */
function repeats(values: readonly string[]): number[] {
  const seen = new Set<string>();
  const repeated: number[] = [];
  for (const [i, value] of values.entries()) {
    if (seen.has(value)) repeated.push(i);
    seen.add(value);
  }
  return repeated;
}

function uniqueRuleNames(list: { rules: readonly { name: string }[] }, ctx: z.RefinementCtx): void {
  for (const i of repeats(list.rules.map((rule) => rule.name))) {
    ctx.addIssue({ code: 'custom', path: ['rules', i, 'name'], message: 'duplicate rule name' });
  }
}

export const authenticationSchema = z
  .object({
    oidc: z.array(oidcIssuerSchema).default([]),
    serviceAccountTokens: serviceAccountAuthSchema.optional(),
    clockSkewSeconds: z.number().int().min(0).max(300).default(30),
  })
  .strict()
  // A token is checked by the rules of its issuer: two sets of rules would leave it to chance which applies.
  .superRefine((auth, ctx) => {
    const message = 'issuer configured twice: each issuer may appear once, in oidc or serviceAccountTokens';
    const issuers = auth.oidc.map((oidc) => oidc.issuer);
    for (const i of repeats(issuers)) ctx.addIssue({ code: 'custom', path: ['oidc', i, 'issuer'], message });
    const serviceAccounts = auth.serviceAccountTokens?.issuer;
    if (serviceAccounts !== undefined && issuers.includes(serviceAccounts)) {
      ctx.addIssue({ code: 'custom', path: ['serviceAccountTokens', 'issuer'], message });
    }
  });

export const accessRuleSchema = z
  .object({
    name,
    action: z.enum(['allow', 'deny']).default('allow'),
    groups: z.array(z.string().min(1)).default([]).describe('Matches a caller in any of these groups'),
    subjects: z.array(z.string().min(1)).default([]).describe('Matches these `sub` values'),
    models: z.array(modelPattern).default(['*']),
  })
  .strict()
  .refine((r) => r.groups.length + r.subjects.length > 0, {
    message: 'a rule names at least one group or subject',
  });

export const extraRouteSchema = z
  .object({
    method: z.enum(['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD']),
    path: z.string().startsWith('/'),
  })
  .strict()
  .superRefine((route, ctx) => {
    const problem = embeddingRouteProblem(route.method, route.path);
    if (problem) ctx.addIssue({ code: 'custom', path: ['path'], message: problem });
  });

export const accessSchema = z
  .object({
    rules: z.array(accessRuleSchema).default([]),
    allowRoutes: z
      .array(extraRouteSchema)
      .default([])
      .describe('Routes other than the embedding APIs that pass through (authenticated, recorded)'),
  })
  .strict()
  // Records and errors name the rule that decided: two of one name would blur the audit trail.
  .superRefine(uniqueRuleNames);

export const limitsSchema = z
  .object({
    maxInputsPerRequest: z.number().int().min(1).max(100_000).default(256),
    maxBytesPerRequest: z
      .number()
      .int()
      .min(1024)
      .max(64 * 1024 * 1024)
      .default(1024 * 1024),
    vectorsPerMinute: z.number().int().min(1).max(10_000_000).default(60_000).describe('Per identity'),
  })
  .strict();

export const detectorNames = [
  'email',
  'phone',
  'ssn',
  'payment-card',
  'iban',
  'ipv4',
  'ipv6',
  'jwt',
  'private-key',
  'aws-key',
  'gcp-key',
  'github-token',
] as const;
export type DetectorName = (typeof detectorNames)[number];

export const maskingScopes = ['forward', 'audit', 'response'] as const;
export type MaskingScope = (typeof maskingScopes)[number];

export const userPatternSchema = z
  .object({
    name,
    regex: z.string().min(1).max(1024).describe('RE2 syntax'),
  })
  .strict();

/**
 * Where the four APIs answer vectors: OpenAI's `data[].embedding`, Ollama's
 * `embeddings` and `embedding`, Cohere's `embeddings` (a matrix, or one per
 * type: `embeddings.base64` holds strings). TEI answers a bare matrix, which
 * no path reaches. A response rule on one of them, or on a field holding one,
 * would mask inside vectors, base64 ones included: vectors are never touched.
 */
const vectorResponseFields = ['data.embedding', 'embeddings', 'embedding'] as const;

/** Whether masking the response field at `path` would reach a vector, or reach below one. */
function reachesVectors(path: string): boolean {
  return vectorResponseFields.some(
    (vector) => path === vector || vector.startsWith(`${path}.`) || path.startsWith(`${vector}.`),
  );
}

// Field names only, as response masking matches them: an array is crossed item
// by item without being named, so an index (`data.0.text`, `texts[0]`) would
// match nothing.
const responseFieldPattern = /^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$/;

const responseField = z
  .string()
  .max(256)
  .regex(responseFieldPattern, {
    error: (issue) =>
      `${JSON.stringify(issue.input)} can match no field: a path is field names joined by dots, each a letter or _ then letters, digits, _ or -, with no index (arrays are crossed item by item)`,
  })
  .refine((path) => !reachesVectors(path), {
    error: (issue) =>
      `${JSON.stringify(issue.input)} reaches vectors (${vectorResponseFields.join(', ')} in the APIs' responses), which response masking never touches: name the text fields instead`,
  });

export const maskingRuleSchema = z
  .object({
    name,
    detectors: z.array(z.enum(detectorNames)).default([]),
    patterns: z.array(userPatternSchema).default([]),
    operator: z.enum(['redact', 'mask', 'hash', 'drop']),
    scopes: z.array(z.enum(maskingScopes)).min(1),
    responseFields: z
      .array(responseField)
      .default([])
      .describe('Dotted paths of response fields masked under the response scope, e.g. texts'),
  })
  .strict()
  .refine((r) => r.detectors.length + r.patterns.length > 0, {
    message: 'a masking rule names at least one detector or pattern',
  })
  .refine((r) => !r.scopes.includes('response') || r.responseFields.length > 0, {
    message: 'the response scope needs responseFields',
    path: ['responseFields'],
  });
export type MaskingRule = z.infer<typeof maskingRuleSchema>;

export const approvalRuleSchema = z
  .object({
    name,
    when: z
      .object({
        minInputs: z.number().int().min(1).optional(),
        models: z.array(modelPattern).optional(),
        operation: z
          .object({ header: z.string().min(1).toLowerCase(), values: z.array(z.string()).min(1) })
          .strict()
          .optional(),
        groupsIn: z.array(z.string().min(1)).optional(),
        groupsNotIn: z.array(z.string().min(1)).optional(),
      })
      .strict(),
    approvers: z
      .object({
        groups: z.array(z.string().min(1)).min(1),
        count: z.number().int().min(1).max(10).default(1),
      })
      .strict(),
    expiresAfterSeconds: z
      .number()
      .int()
      .min(10)
      .max(7 * 86_400)
      .default(3600),
    holdTimeoutSeconds: z.number().int().min(1).max(600).default(120),
    mode: z.enum(['hold', 'deferred']).default('hold'),
    singleUse: z.boolean().default(true),
    notify: z.object({ url: httpsUrl }).strict().optional(),
  })
  .strict();

export const DEFAULT_MAX_PENDING_PER_CALLER = 10;

/**
 * A sidecar holds a batch being cut about twice over (its NDJSON, then the
 * gzip beside it) on top of its working set, under a memory limit of 256 MiB
 * by default: a larger batch would have it killed mid-cut, and, as leftovers
 * are due at once on the next start, killed again.
 */
const MAX_BATCH_BYTES = 16 * 1024 * 1024;

export const auditSchema = z
  .object({
    retentionDays: z.number().int().min(1).max(36_500).default(365),
    batch: z
      .object({
        maxRecords: z.number().int().min(1).max(1_000_000).default(10_000),
        maxBytes: z
          .number()
          .int()
          .min(1024)
          .max(MAX_BATCH_BYTES)
          .default(8 * 1024 * 1024),
        maxAgeSeconds: z.number().min(0.1).max(3600).default(10),
      })
      .strict()
      .default({ maxRecords: 10_000, maxBytes: 8 * 1024 * 1024, maxAgeSeconds: 10 }),
    inputs: z
      .enum(['digest', 'masked', 'none'])
      .default('digest')
      .describe('How inputs appear in records: keyed digests, masked text, or not at all'),
  })
  .strict();

export const policySpecSchema = z
  .object({
    authentication: authenticationSchema.default({ oidc: [], clockSkewSeconds: 30 }),
    access: accessSchema.default({ rules: [], allowRoutes: [] }),
    limits: limitsSchema.default({
      maxInputsPerRequest: 256,
      maxBytesPerRequest: 1024 * 1024,
      vectorsPerMinute: 60_000,
    }),
    masking: z
      .object({ rules: z.array(maskingRuleSchema).default([]) })
      .strict()
      // RE2 decides which user patterns are usable; its verdict is part of validity.
      .superRefine((masking, ctx) => {
        for (const problem of maskingRuleProblems(masking.rules, 'rules')) {
          const path = problem.path.split('.').map((part) => (/^\d+$/.test(part) ? Number(part) : part));
          ctx.addIssue({ code: 'custom', path, message: problem.message });
        }
      })
      .default({ rules: [] }),
    approvals: z
      .object({
        rules: z.array(approvalRuleSchema).default([]),
        // Each approval is kept past its expiry and each hold pins its body in memory:
        // without a cap, one caller could flood the API server or the sidecar.
        maxPendingPerCaller: z
          .number()
          .int()
          .min(1)
          .max(1000)
          .default(DEFAULT_MAX_PENDING_PER_CALLER)
          .describe(
            'Approvals one caller may have Pending in a namespace, and requests one sidecar may hold for it at once; beyond it, 429',
          ),
      })
      .strict()
      // The sidecar names only the rule to the controller, which reads approvers and expiry from
      // the first rule of that name: a request a second one held would get the first one's.
      .superRefine(uniqueRuleNames)
      .default({ rules: [], maxPendingPerCaller: DEFAULT_MAX_PENDING_PER_CALLER }),
    audit: auditSchema.default({
      retentionDays: 365,
      batch: { maxRecords: 10_000, maxBytes: 8 * 1024 * 1024, maxAgeSeconds: 10 },
      inputs: 'digest',
    }),
  })
  .strict();

export type PolicySpec = z.infer<typeof policySpecSchema>;
export type PolicySpecInput = z.input<typeof policySpecSchema>;
export type OidcIssuer = z.infer<typeof oidcIssuerSchema>;
export type AccessRule = z.infer<typeof accessRuleSchema>;
export type ApprovalRule = z.infer<typeof approvalRuleSchema>;
export type Limits = z.infer<typeof limitsSchema>;

export const policyConditionSchema = z.object({
  type: z.string(),
  status: z.enum(['True', 'False', 'Unknown']),
  reason: z.string(),
  message: z.string(),
  observedGeneration: z.number().int().optional(),
  lastTransitionTime: z.string(),
});

export const policyStatusSchema = z.object({
  observedGeneration: z.number().int().optional(),
  contentHash: z.string().optional(),
  podsInSync: z.number().int().optional(),
  podsTotal: z.number().int().optional(),
  sync: z.string().optional().describe('"<in sync>/<total>" for the printer column'),
  conditions: z.array(policyConditionSchema).optional(),
});

export const embeddingPolicySchema = z.object({
  apiVersion: z.literal('veil.dev/v1alpha1'),
  kind: z.literal('EmbeddingPolicy'),
  metadata: z.object({ name, namespace: z.string().optional() }).passthrough(),
  spec: policySpecSchema,
  status: policyStatusSchema.optional(),
});
export type EmbeddingPolicy = z.infer<typeof embeddingPolicySchema>;
