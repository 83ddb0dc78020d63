// Child process: one sidecar, in its own process so the bench can read its peak
// RSS and pin it to a core, and so the load generator does not share its event
// loop. Its settings arrive as JSON in VEIL_BENCH_SIDECAR. Commands from the
// bench: `stats` (the audit pipeline's counters, when its sink keeps any),
// `pump` (synthetic records appended straight to the sidecar's own audit sink
// at the highest rate it takes, to measure the recording pipeline without the
// HTTP path in front of it), `loop-delay` (its event-loop delay and GC pauses
// since the last reading) and `memory`, which every child answers.
import { createHash } from 'node:crypto';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import {
  type AuditDraft,
  type SidecarConfigInput,
  type SidecarOptions,
  sidecarConfigSchema,
  startSidecar,
} from '@veil/sidecar';
import { DropSink } from './drop-sink.ts';
import { trackUsage } from './process-usage.ts';
import { type Command, serveAsChild } from './processes.ts';

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

/** The audit pipeline's counters, as far as the sink in use keeps them. */
export interface RecordingStats {
  readonly recordsWaiting?: number;
  readonly shippedRecords?: number;
  readonly shippedBatches?: number;
  readonly failures?: number;
}

/** The sidecar's event-loop delay since the last reading, in ms (how late any of its callbacks ran), and its GC pauses. */
export interface LoopDelay {
  readonly p99: number;
  readonly max: number;
  readonly gcCount: number;
  readonly gcMaxMs: number;
}

export interface PumpResult {
  readonly records: number;
  readonly errors: number;
  readonly firstError: string | undefined;
  readonly seconds: number;
}

const launch = JSON.parse(process.env.VEIL_BENCH_SIDECAR ?? '{}') as SidecarLaunch;
const options: SidecarOptions = launch.recording === 'drop' ? { sink: new DropSink() } : {};
const config = sidecarConfigSchema.parse(launch.config);
const sidecar = await startSidecar(config, options);
const policy = sidecar.store.current();
if (policy === undefined) {
  console.error('the sidecar has no valid policy; the bootstrap policy was refused');
  process.exit(1);
}

function stats(): RecordingStats | null {
  const sink = sidecar.sink as { stats?: () => RecordingStats };
  return typeof sink.stats === 'function' ? sink.stats() : null;
}

/**
 * A record like the one a masked 8-input OpenAI request leaves. Drafts differ
 * where requests' records do (input and vector digests, latencies), so the
 * recorder sees no more repetition than it would in service.
 */
function syntheticDraft(variant: number): AuditDraft {
  const digest = (n: number) => createHash('sha256').update(`bench input ${variant}/${n}`).digest('hex');
  return {
    time: new Date().toISOString(),
    kind: 'request',
    outcome: 'allowed',
    status: 200,
    identity: { issuer: 'http://127.0.0.1/bench', subject: 'bench-client', groups: ['ml-readers'] },
    policy: { name: policy?.name ?? 'default', hash: policy?.hash ?? 'none' },
    api: 'openai',
    route: '/v1/embeddings',
    model: 'veil-demo-embed',
    inputCount: 8,
    inputs: Array.from({ length: 8 }, (_, n) => ({ digest: `hmac-sha256:${digest(n)}` })),
    masking: [
      { rule: 'emails', detector: 'email', count: 1, field: 'input', operator: 'hash', scope: 'forward' },
      { rule: 'emails', detector: 'email', count: 1, field: 'input', operator: 'hash', scope: 'audit' },
    ],
    latency: { totalMs: 1.2 + variant / 1e4, authMs: 0.05, maskMs: 0.3, upstreamMs: 0.7 + variant / 1e4 },
    vectors: { count: 8, dimensions: 384, digest: digest(99) },
  };
}

async function pump(seconds: number, concurrency: number): Promise<PumpResult> {
  const drafts = Array.from({ length: 1024 }, (_, variant) => syntheticDraft(variant));
  const started = performance.now();
  const end = started + seconds * 1000;
  let drafted = 0;
  let records = 0;
  let errors = 0;
  let firstError: string | undefined;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end && errors < 100) {
        try {
          const draft = drafts[drafted++ % drafts.length] as AuditDraft;
          await sidecar.sink.append({ ...draft, time: new Date().toISOString() });
          records += 1;
        } catch (error) {
          errors += 1;
          firstError ??= (error as Error).message;
        }
      }
    }),
  );
  return { records, errors, firstError, seconds: (performance.now() - started) / 1000 };
}

const loopDelay = monitorEventLoopDelay({ resolution: 1 });
loopDelay.enable();

const usage = trackUsage();

function readLoopDelay(): LoopDelay {
  const { gcCount, gcMaxMs } = usage.read();
  const delay = { p99: loopDelay.percentile(99) / 1e6, max: loopDelay.max / 1e6, gcCount, gcMaxMs };
  loopDelay.reset();
  return delay;
}

async function handle(command: Command): Promise<unknown> {
  switch (command.command) {
    case 'stats':
      return stats();
    case 'loop-delay':
      return readLoopDelay();
    case 'pump':
      return pump(Number(command.seconds), Number(command.concurrency));
    default:
      throw new Error(`unknown command ${command.command}`);
  }
}

serveAsChild(
  {
    url: sidecar.url,
    adminUrl: sidecar.adminUrl,
    sink: sidecar.sink.constructor.name,
  } satisfies SidecarReady,
  () => sidecar.close(),
  handle,
);
