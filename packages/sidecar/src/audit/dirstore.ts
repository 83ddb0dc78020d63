// Evidence in a local directory, in the bucket's key layout: the embedded
// default of `veil dev`. Plain files lock nothing, so `veil evidence verify`
// reports such evidence as not WORM; each file is still written once, whole.
import { readFile } from 'node:fs/promises';
import { dirname, resolve, sep } from 'node:path';
import { sha256Hex } from '@veil/core';
import { createFileAtomic, mkdirDurable } from '../files.ts';
import { EvidenceConflictError, type EvidenceObject, type EvidenceStore } from './store.ts';

export class DirEvidenceStore implements EvidenceStore {
  readonly #root: string;
  readonly description: string;

  constructor(dir: string) {
    this.#root = resolve(dir);
    this.description = `directory ${this.#root}`;
  }

  async put(object: EvidenceObject, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    const path = this.#pathOf(object.key);
    // The stream's folders must outlast a crash as surely as its objects: the spool
    // lets go of records once they are here.
    await mkdirDurable(dirname(path));
    try {
      await createFileAtomic(path, object.bytes);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      // Written by an earlier attempt whose acknowledgement a crash lost.
      if (sha256Hex(await readFile(path)) !== object.sha256) {
        throw new EvidenceConflictError(`${object.key} already holds other bytes`);
      }
    }
  }

  close(): void {}

  #pathOf(key: string): string {
    const path = resolve(this.#root, ...key.split('/'));
    // Keys are built by the shipper, but a path must never leave the directory.
    if (!path.startsWith(this.#root + sep))
      throw new RangeError('an evidence key must stay inside the store');
    return path;
  }
}
