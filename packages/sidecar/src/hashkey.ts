// The key of masking `hash` tokens, of the input digests in audit records and,
// when shared, of approval payload digests. Its worth is in being shared: one key
// for every sidecar of a workload, so a value masks to the same token in each
// replica and after a restart, and an auditor given the key can confirm which
// text a digest stands for.
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { minHashKeyBytes } from '@veil/core';

export interface HashKey {
  readonly key: Buffer;
  /** Read from the file the workload shares, rather than drawn by this process. */
  readonly shared: boolean;
}

/**
 * The key in `file`; a key of this process alone when no file is named (`veil dev`
 * names one, tests need none) or when the named file does not exist, which in a pod
 * means the optional Secret behind it was never created: the pod serves all the
 * same, and `warn` says what that costs and how to fix it. A file that exists but
 * cannot serve as a key stops the start: running on another key would quietly break
 * what the operator set out to share.
 */
export async function loadHashKey(
  file: string | undefined,
  warn: (message: string) => void,
): Promise<HashKey> {
  if (file === undefined) return { key: randomBytes(32), shared: false };
  let key: Buffer;
  try {
    key = await readFile(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new Error(`cannot read the hash key ${file}: ${(error as NodeJS.ErrnoException).code ?? error}`);
    }
    warn(
      `no shared hash key at ${file}: masking hash tokens and input digests use a key of this process only, ` +
        'so they will not match across pods or restarts (masked queries stop matching masked documents, ' +
        'and no one holds the key to check a digest). Create the hash-key Secret in this namespace ' +
        '(docs/operations.md, "Shared hash key"), then restart the pods.',
    );
    return { key: randomBytes(32), shared: false };
  }
  // The content is a secret: its length may be told, never its bytes.
  if (key.length < minHashKeyBytes) {
    throw new Error(
      `the hash key ${file} holds ${key.length} bytes, fewer than ${minHashKeyBytes}: store at least ${minHashKeyBytes} random bytes (32 recommended)`,
    );
  }
  return { key, shared: true };
}
