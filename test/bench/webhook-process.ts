// Child process: the pod-injection webhook server of scenario W. The API server
// calls the webhook from another process, so the bench does too: in one event
// loop with its own client, the webhook's latency would include the client's work.
import { startWebhookServer } from '@veil/injector';
import { testSettings, testTrust } from '../../packages/injector/test/webhook/support/settings.ts';
import { Samples } from './histogram.ts';
import { type ProcessUsage, trackUsage } from './process-usage.ts';
import { type Command, serveAsChild } from './processes.ts';

export interface WebhookReady {
  readonly port: number;
}

/** What the webhook spent since the last reading, and how long its reviews took in it. */
export interface WebhookUsage extends ProcessUsage {
  readonly reviews: number;
  /** In ms, from a review's request headers being read to its answer being sent. */
  readonly inWebhookP50: number;
  readonly inWebhookP99: number;
}

const dir = process.env.VEIL_BENCH_WEBHOOK_TLS_DIR;
if (dir === undefined) throw new Error('VEIL_BENCH_WEBHOOK_TLS_DIR is not set');

const usage = trackUsage();
let reviews = new Samples();
const server = await startWebhookServer({
  observeReview: (ms) => reviews.add(ms),
  settings: testSettings,
  tls: { certFile: `${dir}/tls.crt`, keyFile: `${dir}/tls.key` },
  host: '127.0.0.1',
  port: 0,
  namespaceLabels: async () => ({}),
  bootstrapPolicy: async (_namespace, name) => ({ metadata: { name }, spec: {} }),
  controllerTrust: () => testTrust,
  trustWriters: [],
});

async function handle(command: Command): Promise<unknown> {
  if (command.command === 'usage') {
    const timed = reviews;
    reviews = new Samples();
    return {
      ...usage.read(),
      reviews: timed.count,
      inWebhookP50: timed.quantile(0.5),
      inWebhookP99: timed.quantile(0.99),
    } satisfies WebhookUsage;
  }
  throw new Error(`unknown command ${command.command}`);
}

serveAsChild({ port: server.port } satisfies WebhookReady, () => server.close(), handle);
