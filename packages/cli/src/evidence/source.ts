// The evidence a command reads: a directory, or `s3://BUCKET/PREFIX` pulled
// into a temporary directory first (removed afterwards, whatever happens).
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
    client.destroy();
    await rm(dir, { recursive: true, force: true });
  }
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
