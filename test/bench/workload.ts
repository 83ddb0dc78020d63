// What every scenario sends: an OpenAI embeddings request of 8 inputs of about
// 200 characters of prose each, one of them holding an e-mail address, with a
// real bearer JWT; and the policy the sidecar enforces: the masking, access and
// audit rules of examples/policy.yaml, trusting the bench's own dev issuer.
import { readFile } from 'node:fs/promises';
import { policySpecSchema } from '@veil/core';
import { parse } from 'yaml';

export const EMBEDDINGS_PATH = '/v1/embeddings';
export const AUDIENCE = 'veil';
/** A group examples/policy.yaml lets use every model. */
export const CALLER_GROUP = 'ml-readers';

const prose = [
  'The quarterly review covered the migration of the search index to the new cluster, the latency budget for the retrieval step, and the plan to retire the legacy batch jobs before the end of the year.',
  'Customer support reported that the onboarding guide still describes the old dashboard; please contact the author at jordan.lee@example.com so the screenshots and the export steps can be updated this week.',
  'Embedding models map text into vectors whose distances reflect meaning, so a query about refunds can find a policy paragraph about returns even when the two share almost no words in common at all.',
  'Our warehouse in the north region ships most orders within two days, but holiday peaks and weather delays can stretch that window, which is why the tracking page now shows an estimated range instead.',
  'The incident review found that a missing timeout let one slow dependency hold every worker thread; the fix adds a deadline per call, a circuit breaker, and an alert when the queue depth keeps growing.',
  'Researchers compared three chunking strategies for long contracts and found that overlapping windows of moderate size kept clauses intact while still fitting comfortably inside the model context limit.',
  'The finance team asked for a monthly export of approved invoices grouped by vendor and cost centre, with totals in the local currency and a note wherever an exchange rate had to be estimated by hand.',
  'Before the release, every service must pass the load test at twice the expected peak, keep its error budget for the previous month, and document a rollback path that an on-call engineer can follow alone.',
];

/** The JSON body of every request (the same bytes for all targets and generators). */
export function requestBody(): string {
  return JSON.stringify({ model: 'veil-demo-embed', input: prose, encoding_format: 'float' });
}

export const INPUTS_PER_REQUEST = prose.length;

/** The policy spec the bench's sidecars enforce, as `{ name, spec }` for a bootstrap file. */
export async function benchPolicy(
  issuer: string,
  overrides: { batchMaxAgeSeconds?: number } = {},
): Promise<{ name: string; spec: unknown }> {
  const example = parse(await readFile(new URL('../../examples/policy.yaml', import.meta.url), 'utf8')) as {
    metadata: { name: string };
    spec: Record<string, unknown>;
  };
  const limits = (example.spec.limits ?? {}) as Record<string, unknown>;
  const audit = (example.spec.audit ?? {}) as { batch?: Record<string, unknown> };
  const spec = {
    ...example.spec,
    // Only the bench's own issuer: the example's IdPs are not reachable here.
    authentication: {
      oidc: [{ issuer, audiences: [AUDIENCE], groupsClaim: 'groups', algorithms: ['ES256'] }],
      clockSkewSeconds: 30,
    },
    // One caller drives thousands of requests a second: lift the per-identity
    // budget to the schema's maximum so the bench measures the path, not 429s.
    limits: { ...limits, vectorsPerMinute: 10_000_000 },
    ...(overrides.batchMaxAgeSeconds === undefined
      ? {}
      : { audit: { ...audit, batch: { ...audit.batch, maxAgeSeconds: overrides.batchMaxAgeSeconds } } }),
  };
  return { name: example.metadata.name, spec: policySpecSchema.parse(spec) };
}
