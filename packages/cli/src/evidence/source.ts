// The evidence a command reads: a directory, or `s3://BUCKET/PREFIX` pulled
// into a temporary directory first (removed afterwards, whatever happens,
// Ctrl-C included).
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createProgress } from '../progress.ts';
import type { Io } from './io.ts';
import { type EvidenceSet, loadEvidence } from './load.ts';
import { parseS3Url } from './options.ts';
import { pullEvidence, storePrefix } from './pull.ts';
import { createS3Client, type S3Target } from './s3.ts';

export async function withEvidence<T>(
  command: string,
  target: string,
  s3: S3Target,
  io: Io,
  use: (set: EvidenceSet) => Promise<T>,
): Promise<T> {
  if (!target.startsWith('s3://')) return use(await loadEvidence(target));
  const { bucket, prefix } = parseS3Url(command, target);
  const dir = await mkdtemp(join(tmpdir(), 'veil-evidence-'));
  const client = createS3Client(s3);
  const stopWatching = removeOnSignal(command, dir, io);
  try {
    await pullEvidence({
      client,
      endpoint: s3.endpoint,
      bucket,
      prefix,
      window: { from: undefined, before: undefined },
      out: dir,
      progress: createProgress({ output: io.err, label: 'pull' }),
      now: io.now,
    });
    const set = await loadEvidence(dir);
    return await use({ ...set, dir: target });
  } finally {
    stopWatching();
    client.destroy();
    await rm(dir, { recursive: true, force: true });
  }
}

const signalExitCodes = { SIGINT: 130, SIGTERM: 143 } as const;

/**
 * A signal's default action ends the process without running `finally`, which
 * would leave the partial copies behind: they are removed first, and the
 * process then exits as the shell reports a death by that signal (128 + its number).
 */
function removeOnSignal(command: string, dir: string, io: Io): () => void {
  const handlers = Object.entries(signalExitCodes).map(([signal, code]) => {
    const handler = () => {
      rmSync(dir, { recursive: true, force: true });
      io.err.write(`\nveil: ${command}: interrupted (${signal}); the temporary copy was removed\n`);
      process.exit(code);
    };
    process.once(signal, handler);
    return () => process.off(signal, handler);
  });
  return () => {
    for (const off of handlers) off();
  };
}

/**
 * What a pulled set leaves out or cannot vouch for, for the head of the
 * verifier's output: the store prefix (VEIL_S3_PREFIX) it was pulled from,
 * which no signature covers, and the time window it was pulled for.
 */
export function scopeLines(set: EvidenceSet): string[] {
  const info = set.bucket;
  if (!info) return [];
  const lines: string[] = [];
  const prefix = storePrefix(info.prefix);
  if (prefix !== '') {
    lines.push(
      `pulled from prefix ${prefix} of s3://${info.bucket}: the prefix is not signed, only the stream names under it (cluster/namespace/pod-uid/incarnation)`,
    );
  }
  if (info.from !== null || info.before !== null) {
    lines.push(
      `pulled for ${info.from ?? ''}..${info.before ?? ''} (upload time, end excluded): streams uploading only before or only after it were not checked`,
    );
  }
  return lines;
}
