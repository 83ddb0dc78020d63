// Child process: the stand-in pods of scenario P (see the Kubernetes e2e
// support's standins.ts): created through the bench's API server, injected by
// the real webhook, each with a real sidecar on a loopback address of its own.
// They share this process, not the injector's nor the bench's. Each sidecar's
// policy store reports the moment it takes a new version, on a clock the bench
// can relate to its own; a demo model behind them shows what they forward.
import { KubeConfig } from '@kubernetes/client-node';
import { startDemoModel } from '@veil/sidecar';
import { type StandIn, startStandIns } from '../e2e/kube/support/standins.ts';
import { type Command, serveAsChild } from './processes.ts';

export interface StandInsLaunch {
  readonly kubeconfig: string;
  /** Where the stand-ins keep their files. */
  readonly dir: string;
  readonly namespace: string;
  readonly count: number;
  /** The injector settings' adminPort, which the webhook writes into every pod. */
  readonly adminPort: number;
  /** The injector's pull endpoint and the CA file of its certificate. */
  readonly controller: { readonly url: string; readonly caFile: string };
}

export interface StandInsReady {
  readonly standIns: { readonly name: string; readonly url: string; readonly adminUrl: string }[];
}

const launch = JSON.parse(process.env.VEIL_BENCH_STANDINS ?? '{}') as StandInsLaunch;
const kubeConfig = new KubeConfig();
kubeConfig.loadFromFile(launch.kubeconfig);

const clock = () => performance.timeOrigin + performance.now();
const modelSaw: string[] = [];
const model = await startDemoModel({ onRequest: (_path, body) => modelSaw.push(JSON.stringify(body)) });
let standIns: StandIn[] = [];
try {
  standIns = await startStandIns({
    cp: { dir: launch.dir, kubeConfig: () => kubeConfig },
    namespace: launch.namespace,
    count: launch.count,
    adminPort: launch.adminPort,
    modelUrl: model.url,
    controller: launch.controller,
  });
} catch (error) {
  await model.close();
  throw error;
}

/** Per version, when each stand-in's sidecar began enforcing it. */
const switched = new Map<string, number[]>();
for (const standIn of standIns) {
  standIn.sidecar.store.onChange((policy) => {
    const at = clock();
    const times = switched.get(policy.hash) ?? [];
    times.push(at);
    switched.set(policy.hash, times);
  });
}

/** What the model receives when a caller embeds `text` through one stand-in. */
async function embed(index: number, text: string, token: string): Promise<string> {
  const standIn = standIns[index];
  if (standIn === undefined) throw new Error(`no stand-in ${index}`);
  const before = modelSaw.length;
  const response = await fetch(`${standIn.sidecar.url}/v1/embeddings`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'embed-small', input: text }),
    signal: AbortSignal.timeout(30_000),
  });
  const answer = await response.text();
  if (response.status !== 200) throw new Error(`${standIn.name} answered ${response.status}: ${answer}`);
  return modelSaw[before] ?? '';
}

async function handle(command: Command): Promise<unknown> {
  switch (command.command) {
    case 'clock':
      return clock();
    case 'switched':
      return switched.get(String(command.hash)) ?? [];
    case 'puts':
      return standIns.reduce((sum, standIn) => sum + standIn.puts().length, 0);
    case 'embed':
      return embed(Number(command.index), String(command.text), String(command.token));
    default:
      throw new Error(`unknown command ${command.command}`);
  }
}

serveAsChild(
  {
    standIns: standIns.map((s) => ({ name: s.name, url: s.sidecar.url, adminUrl: s.sidecar.adminUrl })),
  } satisfies StandInsReady,
  async () => {
    await Promise.all(standIns.map((s) => s.close()));
    await model.close();
  },
  handle,
);
