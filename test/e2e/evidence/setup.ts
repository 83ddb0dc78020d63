// What the evidence tests share: a real S3 server with an Object Lock bucket,
// the demo model, a token issuer, a policy file trusting it, and the sidecar
// environment pointing at all of them.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import type { PolicySpecInput } from '@veil/core';
import { startDemoModel, startDevIssuer } from '@veil/sidecar';
import { type S3Server, startS3 } from '../../harness/index.ts';
import { createLockedBucket } from './bucket.ts';

export const audience = 'veil-e2e';
const group = 'evidence-testers';

export type BatchPolicy = { maxRecords?: number; maxBytes?: number; maxAgeSeconds?: number };

export interface EvidenceEnv {
  readonly s3: S3Server;
  readonly client: S3Client;
  readonly bucket: string;
  readonly dir: string;
  readonly token: string;
  /** The model (marker) of every request that reached the demo model. */
  readonly modelSaw: Set<string>;
  /** The sidecar's environment: S3, policy, free ports, the spool in `spoolDir`. */
  env(spoolDir: string, extra?: Record<string, string>): Record<string, string>;
  close(): Promise<void>;
}

export async function startEvidenceEnv(batch: BatchPolicy): Promise<EvidenceEnv> {
  const steps: (() => Promise<unknown>)[] = [];
  const close = async () => {
    for (const step of steps.reverse()) await step().catch(() => undefined);
    steps.length = 0;
  };
  try {
    const dir = await mkdtemp(join(tmpdir(), 'veil-evidence-'));
    steps.push(() => rm(dir, { recursive: true, force: true }));
    const s3 = await startS3();
    steps.push(() => s3.destroy());
    const client = s3.client();
    steps.push(async () => client.destroy());
    const bucket = 'veil-evidence';
    await createLockedBucket(client, bucket);
    const modelSaw = new Set<string>();
    const model = await startDemoModel({
      onRequest: (_path, body) => modelSaw.add(String((body as { model?: unknown }).model)),
    });
    steps.push(() => model.close());
    const issuer = await startDevIssuer();
    steps.push(() => issuer.close());
    const policyFile = join(dir, 'policy.json');
    await writeFile(policyFile, JSON.stringify({ name: 'evidence', spec: policy(issuer.issuer, batch) }));
    const token = await issuer.mint({ sub: 'auditee', aud: audience, groups: [group] });
    const env = (spoolDir: string, extra: Record<string, string> = {}) => ({
      VEIL_UPSTREAM: model.url,
      VEIL_API: 'openai',
      VEIL_HOST: '127.0.0.1',
      VEIL_PROXY_PORT: '0',
      VEIL_ADMIN_PORT: '0',
      VEIL_BOOTSTRAP_POLICY_FILE: policyFile,
      VEIL_POD_NAMESPACE: 'ml',
      VEIL_POD_NAME: 'embed-0',
      VEIL_POD_UID: 'b2f7c1de-5a0e-4c1b-9e53-2f1d8c7a6b40',
      VEIL_CLUSTER: 'e2e',
      VEIL_S3_ENDPOINT: s3.endpoint,
      VEIL_S3_BUCKET: bucket,
      VEIL_S3_REGION: s3.region,
      VEIL_S3_FORCE_PATH_STYLE: 'true',
      VEIL_SPOOL_DIR: spoolDir,
      VEIL_RETENTION_SECONDS: '60',
      AWS_ACCESS_KEY_ID: s3.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
      ...extra,
    });
    return { s3, client, bucket, dir, token, modelSaw, env, close };
  } catch (error) {
    await close();
    throw error;
  }
}

function policy(issuer: string, batch: BatchPolicy): PolicySpecInput {
  return {
    authentication: { oidc: [{ issuer, audiences: [audience], algorithms: ['ES256'] }] },
    access: { rules: [{ name: 'testers', groups: [group], models: ['*'] }] },
    limits: { vectorsPerMinute: 10_000_000 },
    audit: {
      retentionDays: 1,
      batch: { maxRecords: 10_000, maxBytes: 8 * 1024 * 1024, maxAgeSeconds: 0.2, ...batch },
    },
  };
}
