// Durable recording shipped to a real S3 server with Object Lock (scenario D).
// One sidecar records to the spool (fsync on) and ships to the bucket; it is
// driven twice: through HTTP at its maximum request rate (one record per
// request, so bounded by the request path), then by records appended straight
// to its own audit sink (the recording pipeline alone: spool, batches, signed
// manifests, locked uploads). Each phase runs for a fixed time, then waits
// until the spool is drained; records/s counts from the start of the load to
// the moment the last record was acknowledged by S3. The bucket is then read
// back and its batch manifests counted, so the figure is checked end to end.
import { setTimeout as sleep } from 'node:timers/promises';
import {
  CreateBucketCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  type S3Client,
} from '@aws-sdk/client-s3';
import { type S3Server, startS3 } from '../harness/index.ts';
import { closedLoop, warmUp } from './load.ts';
import { cpuSeconds } from './processes.ts';
import type { SidecarChild, World } from './setup.ts';
import type { PumpResult, RecordingStats } from './sidecar-process.ts';
import { onTeardown } from './teardown.ts';
import { runWrk, writeWrkScript } from './wrk.ts';

const BUCKET = 'veil-bench-evidence';
/** The bench's batches are cut at this age at the latest, so a drain does not wait out the example's 10 s. */
export const BATCH_MAX_AGE_SECONDS = 1;
const DRAIN_TIMEOUT_MS = 180_000;

export interface ShippingPlan {
  readonly seconds: number;
  readonly connections: number;
  /** Appends in flight at once when records are pumped straight into the sink. */
  readonly pumpConcurrency: number;
  readonly wrk: string | undefined;
  readonly cpus: string | undefined;
  /** For wrk's script. */
  readonly dir: string;
}

export interface PhaseResult {
  readonly name: string;
  readonly records: number;
  readonly loadSeconds: number;
  /** After the load stopped, until nothing waited in the spool; undefined when it never drained. */
  readonly drainSeconds: number | undefined;
  /** The most records seen waiting for S3 during the load. */
  readonly maxWaiting: number;
  readonly errors: number;
  readonly firstError: string | undefined;
  /** Records over load plus drain time; undefined when it never drained. */
  readonly rate: number | undefined;
  /** The sidecar's CPU over load and drain, as a share of one core. */
  readonly cpu: number | undefined;
}

export interface ShippingResult {
  readonly sink: string;
  readonly phases: PhaseResult[];
  /** Records the bucket's batch manifests account for, and the batches. */
  readonly inS3: { records: number; batches: number };
  /** What the sidecar says it shipped. */
  readonly shipped: number | undefined;
  /** Records the bench knows it caused: warm-up, requests wrk counted, records pumped. */
  readonly expected: number;
}

export class ShippingUnavailable extends Error {}

export async function shipToS3(world: World, plan: ShippingPlan): Promise<ShippingResult> {
  let s3: S3Server;
  try {
    s3 = await startS3();
  } catch (error) {
    throw new ShippingUnavailable(`no S3 server: ${(error as Error).message}`);
  }
  onTeardown('stop the S3 server', () => s3.destroy());
  const client = s3.client();
  onTeardown('close the S3 client', async () => client.destroy());
  await client.send(new CreateBucketCommand({ Bucket: BUCKET, ObjectLockEnabledForBucket: true }));

  const sidecar = await world.startSidecar('sidecar → model, shipping to S3', {
    recording: 'default',
    batchMaxAgeSeconds: BATCH_MAX_AGE_SECONDS,
    config: {
      s3Endpoint: s3.endpoint,
      s3Bucket: BUCKET,
      s3Region: s3.region,
      s3ForcePathStyle: true,
      // COMPLIANCE locks cannot be lifted: keep them short-lived on a bench.
      retentionSeconds: 60,
      auditCloseGraceSeconds: 10,
    },
    env: {
      AWS_ACCESS_KEY_ID: s3.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
      AWS_REGION: s3.region,
    },
  });
  if ((await stats(sidecar)) === null) {
    await sidecar.stop();
    throw new ShippingUnavailable(`the sidecar's audit sink (${sidecar.ready.sink}) reports no shipping`);
  }
  const warmUpRequests = 200;
  await warmUp(sidecar.target, warmUpRequests);
  await drained(sidecar, Date.now() + DRAIN_TIMEOUT_MS);

  const phases: PhaseResult[] = [];
  phases.push(await phase(sidecar, 'HTTP at max load → S3', () => httpLoad(sidecar, plan)));
  phases.push(
    await phase(sidecar, 'records straight into the sink → S3', async () => {
      const pumped = await sidecar.call<PumpResult>(
        { command: 'pump', seconds: plan.seconds, concurrency: plan.pumpConcurrency },
        (plan.seconds + 60) * 1000,
      );
      return pumped;
    }),
  );
  const shipped = (await stats(sidecar))?.shippedRecords;
  // A clean stop closes the stream: its closing manifest is the last object.
  await sidecar.stop();
  const expected = phases.reduce((sum, phase) => sum + phase.records, warmUpRequests);
  return { sink: sidecar.ready.sink, phases, inS3: await countInBucket(client), shipped, expected };
}

async function httpLoad(sidecar: SidecarChild, plan: ShippingPlan): Promise<PumpResult> {
  if (plan.wrk) {
    const script = await writeWrkScript(plan.dir, sidecar.target);
    const result = await runWrk(plan.wrk, script, sidecar.target, {
      connections: plan.connections,
      seconds: plan.seconds,
      threads: 1,
      cpus: plan.cpus,
    });
    return {
      records: result.requests,
      errors: result.errors,
      firstError: result.errors > 0 ? `${result.errors} non-2xx answers or socket errors` : undefined,
      seconds: result.seconds,
    };
  }
  const result = await closedLoop(sidecar.target, { connections: plan.connections, seconds: plan.seconds });
  return {
    records: result.ok + result.errors,
    errors: result.errors,
    firstError: result.firstError,
    seconds: result.seconds,
  };
}

async function phase(
  sidecar: SidecarChild,
  name: string,
  load: () => Promise<PumpResult>,
): Promise<PhaseResult> {
  let maxWaiting = 0;
  let loading = true;
  const watcher = (async () => {
    while (loading) {
      maxWaiting = Math.max(maxWaiting, (await stats(sidecar))?.recordsWaiting ?? 0);
      await sleep(250);
    }
  })();
  const cpuBefore = await cpuSeconds(sidecar.pid);
  const started = performance.now();
  let result: PumpResult;
  try {
    result = await load();
  } finally {
    loading = false;
    await watcher;
  }
  const loadEnded = performance.now();
  const ok = await drained(sidecar, Date.now() + DRAIN_TIMEOUT_MS);
  const finished = performance.now();
  const total = (finished - started) / 1000;
  const cpuAfter = await cpuSeconds(sidecar.pid);
  return {
    name,
    records: result.records,
    loadSeconds: (loadEnded - started) / 1000,
    drainSeconds: ok ? (finished - loadEnded) / 1000 : undefined,
    maxWaiting,
    errors: result.errors,
    firstError: result.firstError,
    rate: ok ? result.records / total : undefined,
    cpu: cpuBefore === undefined || cpuAfter === undefined ? undefined : (cpuAfter - cpuBefore) / total,
  };
}

function stats(sidecar: SidecarChild): Promise<RecordingStats | null> {
  return sidecar.call<RecordingStats | null>({ command: 'stats' }, 10_000);
}

/**
 * Polls until no record waits for S3, seen twice in a row (a request wrk gave up
 * on at its stop may still be on its way to the spool); false at the deadline.
 */
async function drained(sidecar: SidecarChild, deadline: number): Promise<boolean> {
  let empty = 0;
  while (Date.now() < deadline) {
    const now = await stats(sidecar);
    empty = (now?.recordsWaiting ?? 0) === 0 ? empty + 1 : 0;
    if (empty >= 2) return true;
    await sleep(50);
  }
  return false;
}

/** Sums the record counts of every batch manifest in the bucket. */
async function countInBucket(client: S3Client): Promise<{ records: number; batches: number }> {
  let records = 0;
  let batches = 0;
  let token: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, ContinuationToken: token }));
    for (const object of page.Contents ?? []) {
      if (!object.Key?.includes('/manifests/')) continue;
      const got = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: object.Key }));
      const manifest = JSON.parse((await got.Body?.transformToString('utf8')) ?? '{}') as {
        kind?: string;
        batch?: { records?: number };
      };
      if (manifest.kind === 'batch') {
        batches += 1;
        records += manifest.batch?.records ?? 0;
      }
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return { records, batches };
}
