// The upstream of scenario B: one fixed OpenAI embeddings answer, the demo
// model's own answer to the bench request (8 inputs × 384 dimensions), taken
// from the model once at start-up. The demo model computes its vectors in Node
// and tops out well below the throughput target, so as B's upstream it, not
// the proxy in front of it, would set the figure. The canned answer is real
// (the sidecar still parses, checks and digests every vector) but costs the
// upstream almost nothing: nginx serves it from a static file when installed,
// else a minimal Node server does, in both cases off the proxies' core.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CannedReady } from './canned-process.ts';
import { startNginx } from './nginx.ts';
import { findProgram, startNodeChild } from './processes.ts';
import { EMBEDDINGS_PATH, INPUTS_PER_REQUEST, requestBody } from './workload.ts';

export interface CannedServer {
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  /** What serves the answer, for the report. */
  readonly servedBy: string;
  /** The answer's size in bytes. */
  readonly bytes: number;
  /** Dimensions of each vector in the answer. */
  readonly dimensions: number;
  stop(): Promise<void>;
}

/** The model's answer to the bench request, checked to be the full set of float vectors. */
export async function cannedAnswer(modelUrl: string): Promise<{ body: Buffer; dimensions: number }> {
  const response = await fetch(`${modelUrl}${EMBEDDINGS_PATH}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: requestBody(),
    signal: AbortSignal.timeout(30_000),
  });
  const bytes = Buffer.from(await response.arrayBuffer());
  const answer = JSON.parse(bytes.toString('utf8')) as { data?: { embedding?: unknown }[] };
  const vectors = answer.data ?? [];
  if (
    response.status !== 200 ||
    vectors.length !== INPUTS_PER_REQUEST ||
    !vectors.every((item) => Array.isArray(item.embedding) && item.embedding.length > 0)
  ) {
    throw new Error(`the demo model gave no usable answer to can (${response.status})`);
  }
  return { body: bytes, dimensions: (vectors[0]?.embedding as unknown[]).length };
}

export async function startCannedUpstream(
  modelUrl: string,
  dir: string,
  cpus: string | undefined,
): Promise<CannedServer> {
  const answer = await cannedAnswer(modelUrl);
  const file = join(dir, 'canned-embeddings.json');
  await writeFile(file, answer.body);
  const shape = { bytes: answer.body.length, dimensions: answer.dimensions };
  const nginx = findProgram('nginx');
  if (nginx !== undefined) {
    const server = await startNginx(nginx, join(dir, 'nginx-canned'), { kind: 'static', file }, cpus);
    return {
      url: server.url,
      port: Number(new URL(server.url).port),
      pid: server.pid,
      servedBy: 'nginx, static file',
      ...shape,
      stop: server.stop,
    };
  }
  const child = await startNodeChild<CannedReady>({
    name: 'canned upstream',
    script: './canned-process.ts',
    env: { VEIL_BENCH_CANNED_FILE: file },
    cpus,
    logFile: join(dir, 'canned.log'),
  });
  return {
    url: child.ready.url,
    port: child.ready.port,
    pid: child.pid,
    servedBy: 'minimal Node server (nginx missing)',
    ...shape,
    stop: child.stop,
  };
}
