import { once } from 'node:events';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { type ApiName, dialects } from '../../src/dialects/index.ts';

interface Job {
  api: ApiName;
  path: string;
  body: string;
}

/** What parsing found: the count of inputs, or the error message. */
export type Parsed = { inputCount: number } | { error: string };

/**
 * Parses `body` in a worker with half the heap the chart gives the sidecar: a parse costing
 * memory by the item ends it with ERR_WORKER_OUT_OF_MEMORY, as it would end the sidecar.
 */
export async function parseInSmallHeap(job: Job): Promise<Parsed> {
  const worker = new Worker(new URL(import.meta.url), {
    workerData: job,
    resourceLimits: { maxOldGenerationSizeMb: 64, maxYoungGenerationSizeMb: 8 },
  });
  try {
    const [parsed] = await once(worker, 'message');
    return parsed as Parsed;
  } finally {
    await worker.terminate();
  }
}

function parse({ api, path, body }: Job): Parsed {
  const dialect = dialects.find((candidate) => candidate.name === api);
  if (dialect === undefined) return { error: `no dialect ${api}` };
  try {
    return { inputCount: dialect.parse(JSON.parse(body), path).inputCount };
  } catch (error) {
    return { error: (error as Error).message };
  }
}

if (!isMainThread) parentPort?.postMessage(parse(workerData as Job));
