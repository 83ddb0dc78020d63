// The CA bundle sidecars trust the controller's serving certificate by (its pull
// and approvals ports). The controller publishes it beside its public key in every
// injected namespace. Self-managed certificates set it from the Secret each pass;
// in files mode (cert-manager, or a mounted pair) it is the `ca.crt` file beside the
// serving pair, when there is one, read again whenever its directory changes.
import { type FSWatcher, watch } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

export type CaBundleSource = {
  /** The PEM bundle as last known; undefined while none is known. */
  current(): string | undefined;
  /** Called after the bundle changed; returns the unsubscribe. */
  onChange(listener: (bundle: string | undefined) => void): () => void;
};

/** A source whose owner sets the bundle: self-managed certificates after each pass. */
export class CaBundleHolder implements CaBundleSource {
  #bundle: string | undefined;
  readonly #listeners = new Set<(bundle: string | undefined) => void>();

  current(): string | undefined {
    return this.#bundle;
  }

  set(bundle: string | undefined): void {
    const next = bundle === undefined || bundle.trim() === '' ? undefined : normalise(bundle);
    if (next === this.#bundle) return;
    this.#bundle = next;
    for (const listener of this.#listeners) listener(next);
  }

  onChange(listener: (bundle: string | undefined) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

/** The `ca.crt` beside a serving certificate file. */
export function caFileBeside(certFile: string): string {
  return join(dirname(certFile), 'ca.crt');
}

export type FileCaBundleOptions = {
  file: string;
  pollIntervalMs?: number;
  debounceMs?: number;
};

/**
 * A file's bundle, absent while the file is. The directory is watched (the kubelet
 * swaps a mounted Secret by renaming a `..data` symlink) and polled as a fallback.
 */
export class FileCaBundle extends CaBundleHolder {
  readonly #options: FileCaBundleOptions;
  readonly #watcher: FSWatcher | undefined;
  readonly #poll: NodeJS.Timeout;
  #debounce: NodeJS.Timeout | undefined;
  #queue: Promise<void> = Promise.resolve();

  constructor(options: FileCaBundleOptions) {
    super();
    this.#options = options;
    try {
      this.#watcher = watch(dirname(options.file), { persistent: false }, () => this.#schedule()).on(
        'error',
        () => undefined,
      );
    } catch {
      // No directory (yet): the poll does the work.
      this.#watcher = undefined;
    }
    this.#poll = setInterval(() => void this.reload(), options.pollIntervalMs ?? 60_000).unref();
  }

  /** Reads the file now; resolves once the bundle reflects it. */
  reload(): Promise<void> {
    this.#queue = this.#queue.then(async () => {
      const text = await readFile(this.#options.file, 'utf8').catch(() => undefined);
      this.set(text);
    });
    return this.#queue;
  }

  close(): void {
    this.#watcher?.close();
    clearInterval(this.#poll);
    clearTimeout(this.#debounce);
  }

  #schedule(): void {
    clearTimeout(this.#debounce);
    this.#debounce = setTimeout(() => void this.reload(), this.#options.debounceMs ?? 100);
  }
}

function normalise(pem: string): string {
  return pem.endsWith('\n') ? pem : `${pem}\n`;
}
