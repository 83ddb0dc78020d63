// The evidence a command reads: a directory, or `s3://BUCKET/PREFIX` pulled
// into a temporary directory first (removed afterwards, whatever happens).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createProgress } from '../progress.ts';
import type { Io } from './io.ts';
import { type EvidenceSet, loadEvidence } from './load.ts';
import { parseS3Url } from './options.ts';
import { pullEvidence } from './pull.ts';
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
