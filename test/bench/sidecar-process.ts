// Child process: one sidecar, in its own process so the bench can read its peak
// RSS and pin it to a core, and so the load generator does not share its event
// loop. Its settings arrive as JSON in VEIL_BENCH_SIDECAR.
import {
  type SidecarConfigInput,
  type SidecarOptions,
  sidecarConfigSchema,
  startSidecar,
} from '@veil/sidecar';
import { DropSink } from './drop-sink.ts';
import { serveAsChild } from './processes.ts';

export interface SidecarLaunch {
  readonly config: SidecarConfigInput;
  /** `default`: the sidecar's own durable recording; `drop`: recording off. */
  readonly recording: 'default' | 'drop';
}

export interface SidecarReady {
  readonly url: string;
  readonly adminUrl: string;
  /** The class of the audit sink in use, for the report. */
  readonly sink: string;
}

const launch = JSON.parse(process.env.VEIL_BENCH_SIDECAR ?? '{}') as SidecarLaunch;
const options: SidecarOptions = launch.recording === 'drop' ? { sink: new DropSink() } : {};
const sidecar = await startSidecar(sidecarConfigSchema.parse(launch.config), options);
if (sidecar.store.current() === undefined) {
  console.error('the sidecar has no valid policy; the bootstrap policy was refused');
  process.exit(1);
}
serveAsChild(
  {
    url: sidecar.url,
    adminUrl: sidecar.adminUrl,
    sink: sidecar.sink.constructor.name,
  } satisfies SidecarReady,
  () => sidecar.close(),
);
