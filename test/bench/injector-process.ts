// Child process: the injector of scenario P (webhook, controller, pull
// endpoint), configured as the Kubernetes e2e tests run it, against the
// bench's API server. In a process of its own, pinned apart when the machine
// allows, so that what it spends on a policy change is not shared with the
// stand-in sidecars it pushes to or with the bench measuring it. Its push
// outcomes are kept with their times, on a clock the bench can relate to its own.
import { KubeConfig } from '@kubernetes/client-node';
import { startInjector } from '@veil/injector';
import { type InjectorFiles, injectorConfig } from '../e2e/kube/support/injector.ts';
import { type Command, serveAsChild } from './processes.ts';

export interface InjectorLaunch {
  readonly kubeconfig: string;
  readonly files: InjectorFiles;
}

export interface InjectorReady {
  readonly webhookUrl: string;
  /** The pull endpoint, where sidecars also get their admin-port certificates. */
  readonly pullUrl: string;
}

/** What the controller's pushes of one version came to: acknowledgement times and the other outcomes. */
export interface PushTally {
  /** Epoch milliseconds (fractional) on this process's clock. */
  readonly acks: number[];
  readonly refused: number;
  readonly failed: number;
}

const launch = JSON.parse(process.env.VEIL_BENCH_INJECTOR ?? '{}') as InjectorLaunch;
const kubeConfig = new KubeConfig();
kubeConfig.loadFromFile(launch.kubeconfig);

const clock = () => performance.timeOrigin + performance.now();
const tallies = new Map<string, { acks: number[]; refused: number; failed: number }>();

// A deployment's lease: with 50 sidecars being pushed to, a short test lease
// could lapse and hand the measurement a leader election.
const injector = await startInjector(
  injectorConfig(launch.files, { leaseDurationSeconds: 15, leaseRenewSeconds: 5 }),
  {
    kubeConfig,
    log: {
      info: () => undefined,
      warn: (message, fields) => console.error(`injector: ${message} ${JSON.stringify(fields ?? {})}`),
    },
    onPush: (event) => {
      const at = clock();
      let tally = tallies.get(event.hash);
      if (tally === undefined) {
        tally = { acks: [], refused: 0, failed: 0 };
        tallies.set(event.hash, tally);
      }
      if (event.outcome.kind === 'ack') tally.acks.push(at);
      else if (event.outcome.kind === 'nack') tally.refused += 1;
      else tally.failed += 1;
    },
  },
);

async function handle(command: Command): Promise<unknown> {
  switch (command.command) {
    case 'clock':
      return clock();
    case 'cached':
      return injector.controller.policy(String(command.namespace), String(command.name)) !== undefined;
    case 'pushes':
      return (tallies.get(String(command.hash)) ?? { acks: [], refused: 0, failed: 0 }) satisfies PushTally;
    default:
      throw new Error(`unknown command ${command.command}`);
  }
}

serveAsChild(
  { webhookUrl: injector.webhook.url, pullUrl: injector.pull.url } satisfies InjectorReady,
  () => injector.close(),
  handle,
);
