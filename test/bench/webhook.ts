// Scenario W: the pod-injection webhook's own latency, as the API server would
// see it: AdmissionReview POSTs over HTTPS to a real webhook server, one a
// caller at a time and 8 at a time, with a fresh pod each time. The server runs
// in its own process, pinned to the proxy's core when the machine allows.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCertificateAuthority, issueServingCertificate } from '@veil/injector';
import { Pool } from 'undici';
import { podReview } from '../../packages/injector/test/webhook/support/review.ts';
import { Samples } from './histogram.ts';
import { startNodeChild } from './processes.ts';
import type { CpuLayout } from './setup.ts';
import type { WebhookReady } from './webhook-process.ts';

export interface WebhookResult {
  readonly concurrency: number;
  readonly requests: number;
  readonly p50: number;
  readonly p99: number;
  readonly errors: number;
  /** AdmissionReviews answered a second, over the whole run at this concurrency. */
  readonly perSecond: number;
}

const validity = () => ({
  notBefore: new Date(Date.now() - 60_000),
  notAfter: new Date(Date.now() + 3_600_000),
});

export async function benchWebhook(requests: number, cpus: CpuLayout): Promise<WebhookResult[]> {
  const dir = await mkdtemp(join(tmpdir(), 'veil-bench-webhook-'));
  const ca = createCertificateAuthority('veil-bench-ca', validity());
  const leaf = issueServingCertificate(ca, ['localhost'], validity());
  await writeFile(join(dir, 'tls.crt'), leaf.cert);
  await writeFile(join(dir, 'tls.key'), leaf.key);
  const server = await startNodeChild<WebhookReady>({
    name: 'webhook',
    script: './webhook-process.ts',
    env: { VEIL_BENCH_WEBHOOK_TLS_DIR: dir },
    cpus: cpus.sidecar,
    logFile: join(dir, 'webhook.log'),
  });
  const pool = new Pool(`https://localhost:${server.ready.port}`, {
    connections: 8,
    connect: { ca: ca.cert },
  });
  try {
    const results: WebhookResult[] = [];
    for (const concurrency of [1, 8]) results.push(await drive(pool, requests, concurrency));
    return results;
  } finally {
    await pool.close();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

async function drive(pool: Pool, requests: number, concurrency: number): Promise<WebhookResult> {
  const histogram = new Samples();
  let sent = 0;
  let errors = 0;
  const worker = async () => {
    while (sent < requests) {
      sent += 1;
      const body = JSON.stringify(podReview('ml', modelPod(`embedder-${sent}`)));
      const started = performance.now();
      const response = await pool.request({
        method: 'POST',
        path: '/mutate-pods',
        body,
        headers: { 'content-type': 'application/json' },
      });
      const answer = (await response.body.json()) as { response?: { allowed?: boolean; patch?: string } };
      histogram.add(performance.now() - started);
      if (response.statusCode !== 200 || !answer.response?.allowed || !answer.response.patch) errors += 1;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (performance.now() - started) / 1000;
  return {
    concurrency,
    requests,
    p50: histogram.quantile(0.5),
    p99: histogram.quantile(0.99),
    errors,
    perSecond: requests / seconds,
  };
}

function modelPod(name: string) {
  return {
    metadata: { name, annotations: { 'veil.dev/inject': 'true' } },
    spec: {
      serviceAccountName: 'default',
      containers: [
        { name: 'model', image: 'example.invalid/model:1', ports: [{ name: 'http', containerPort: 8080 }] },
      ],
    },
  };
}
