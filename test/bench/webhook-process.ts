// Child process: the pod-injection webhook server of scenario W. The API server
// calls the webhook from another process, so the bench does too: in one event
// loop with its own client, the webhook's latency would include the client's work.
import { startWebhookServer } from '@veil/injector';
import { testSettings } from '../../packages/injector/test/webhook/support/settings.ts';
import { type Command, serveAsChild } from './processes.ts';
import { trackUsage } from './webhook-usage.ts';

export interface WebhookReady {
  readonly port: number;
}

const dir = process.env.VEIL_BENCH_WEBHOOK_TLS_DIR;
if (dir === undefined) throw new Error('VEIL_BENCH_WEBHOOK_TLS_DIR is not set');

const usage = trackUsage();
const server = await startWebhookServer({
  settings: testSettings,
  tls: { certFile: `${dir}/tls.crt`, keyFile: `${dir}/tls.key` },
  host: '127.0.0.1',
  port: 0,
  namespaceLabels: async () => ({}),
  bootstrapPolicy: async (_namespace, name) => ({ metadata: { name }, spec: {} }),
});

async function handle(command: Command): Promise<unknown> {
  if (command.command === 'usage') return usage.read();
  throw new Error(`unknown command ${command.command}`);
}

serveAsChild({ port: server.port } satisfies WebhookReady, () => server.close(), handle);
