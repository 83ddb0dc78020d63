import { type FileHandle, mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';
import type { AuditDraft, AuditSink } from './sink.ts';
import { RecordEncoder, type StreamIdentity } from './stream.ts';

interface Pending {
  readonly line: string;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
}

/**
 * Records as NDJSON in a local file, each durable (fdatasync) before its
 * append resolves. Appends that arrive while a sync is in flight share the
 * next one (group commit), so throughput does not pay one sync per request.
 */
export class LocalNdjsonSink implements AuditSink {
  readonly #encoder: RecordEncoder;
  readonly #file: FileHandle;
  #seq = 0;
  #queue: Pending[] = [];
  #flushing = false;
  #closed = false;

  private constructor(encoder: RecordEncoder, file: FileHandle) {
    this.#encoder = encoder;
    this.#file = file;
  }

  static async open(dir: string, identity: StreamIdentity): Promise<LocalNdjsonSink> {
    await mkdir(dir, { recursive: true });
    const file = await open(join(dir, `${identity.pod.uid}-${identity.incarnation}.ndjson`), 'a');
    return new LocalNdjsonSink(new RecordEncoder(identity), file);
  }

  accepting(): boolean {
    return !this.#closed;
  }

  append(draft: AuditDraft): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('audit sink is closed'));
    const line = this.#encoder.encode(draft, this.#seq++);
    return new Promise((resolve, reject) => {
      this.#queue.push({ line, resolve, reject });
      if (!this.#flushing) void this.#flush();
    });
  }

  async #flush(): Promise<void> {
    this.#flushing = true;
    while (this.#queue.length > 0) {
      const batch = this.#queue;
      this.#queue = [];
      try {
        await this.#file.appendFile(batch.map((p) => `${p.line}\n`).join(''));
        await this.#file.datasync();
        for (const pending of batch) pending.resolve();
      } catch (error) {
        for (const pending of batch) pending.reject(error as Error);
      }
    }
    this.#flushing = false;
  }

  async close(): Promise<void> {
    this.#closed = true;
    while (this.#flushing) await new Promise((resolve) => setImmediate(resolve));
    await this.#file.close();
  }
}
