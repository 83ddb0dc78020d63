// Scenario W: the pod-injection webhook's own latency, timed by a client as the
// API server would time it and by the webhook itself (from a review's request
// headers to its answer): AdmissionReview POSTs over HTTPS to a real webhook
// server, one a caller at a time and 8 at a time, with a fresh pod each time, on
// connections kept alive as the API server keeps them. The server runs in its
// own process, pinned to the proxy's core when the machine allows; the client
// runs in the bench, on the other cores.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createCertificateAuthority, issueServingCertificate } from '@veil/injector';
import { Pool } from 'undici';
import { podReview } from '../../packages/injector/test/webhook/support/review.ts';
import { Samples } from './histogram.ts';
import { type ProcessUsage, trackUsage } from './process-usage.ts';
import { type Child, startNodeChild } from './processes.ts';
import type { CpuLayout } from './setup.ts';
import type { WebhookReady, WebhookUsage } from './webhook-process.ts';

export interface WebhookResult {
  readonly concurrency: number;
  readonly requests: number;
  readonly p50: number;
  readonly p99: number;
  readonly errors: number;
  /** AdmissionReviews answered a second, over the whole run at this concurrency. */
  readonly perSecond: number;
  /** What the webhook process spent over the run, warm-up excluded, and its reviews' time in it. */
  readonly server: WebhookUsage;
  /** What the bench (the client) spent over the same run. */
  readonly client: ProcessUsage;
  /** The client's own event-loop delay, p99 in ms: how late it could be to send or to see an answer. */
  readonly clientLagP99: number;
}

const concurrencies = [1, 8];

// Reviews sent and not counted before each run: the API server calls a webhook
// that has been up for long, with its code optimised and its connections open.
const warmUp = 500;

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
    // For profiling the webhook under load, e.g. "--cpu-prof --cpu-prof-dir=DIR" or "--trace-gc".
    nodeArgs: (process.env.VEIL_BENCH_WEBHOOK_NODE_ARGS ?? '').split(' ').filter(Boolean),
    cpus: cpus.sidecar,
    logFile: join(dir, 'webhook.log'),
  });
  const pool = new Pool(`https://localhost:${server.ready.port}`, {
    connections: Math.max(...concurrencies),
    connect: { ca: ca.cert },
  });
  try {
    const results: WebhookResult[] = [];
    for (const concurrency of concurrencies) results.push(await measure(pool, server, requests, concurrency));
    return results;
  } finally {
    await pool.close();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

async function measure(
  pool: Pool,
  server: Child<WebhookReady>,
  requests: number,
  concurrency: number,
): Promise<WebhookResult> {
  await drive(pool, reviewBodies(Math.min(warmUp, requests)), concurrency);
  // Made before the clock starts: the API server has its pods serialised already,
  // and with 8 under way the client's own work would delay the answers it times.
  const bodies = reviewBodies(requests);
  const clientUsage = trackUsage();
  const lag = monitorEventLoopDelay({ resolution: 1 });
  await server.call<WebhookUsage>({ command: 'usage' });
  lag.enable();
  const started = performance.now();
  const run = await drive(pool, bodies, concurrency);
  const seconds = (performance.now() - started) / 1000;
  lag.disable();
  const client = clientUsage.read();
  clientUsage.stop();
  const serverUsage = await server.call<WebhookUsage>({ command: 'usage' });
  return {
    concurrency,
    requests,
    p50: run.latency.quantile(0.5),
    p99: run.latency.quantile(0.99),
    errors: run.errors,
    perSecond: requests / seconds,
    server: serverUsage,
    client,
    clientLagP99: lag.percentile(99) / 1e6,
  };
}

/** A fresh pod in each review. */
function reviewBodies(count: number): string[] {
  return Array.from({ length: count }, (_, i) => JSON.stringify(podReview('ml', modelPod(`embedder-${i}`))));
}

async function drive(
  pool: Pool,
  bodies: readonly string[],
  concurrency: number,
): Promise<{ latency: Samples; errors: number }> {
  const latency = new Samples();
  let sent = 0;
  let errors = 0;
  const worker = async () => {
    while (sent < bodies.length) {
      const body = bodies[sent++];
      const started = performance.now();
      const response = await pool.request({
        method: 'POST',
        path: '/mutate-pods',
        body,
        headers: { 'content-type': 'application/json' },
      });
      const answer = (await response.body.json()) as { response?: { allowed?: boolean; patch?: string } };
      latency.add(performance.now() - started);
      if (response.statusCode !== 200 || !answer.response?.allowed || !answer.response.patch) errors += 1;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { latency, errors };
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
