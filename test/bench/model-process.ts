// Child process: the demo embedding model, the upstream of every scenario.
import { startDemoModel } from '@veil/sidecar';
import { serveAsChild } from './processes.ts';

export interface ModelReady {
  readonly url: string;
  readonly port: number;
}

const model = await startDemoModel({ host: '127.0.0.1', port: 0 });
serveAsChild({ url: model.url, port: model.port } satisfies ModelReady, () => model.close());
