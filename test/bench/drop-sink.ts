// Recording off, for the bench's comparison of durable recording against none:
// it takes every record and keeps nothing. Never part of the product, where a
// request without a durable record must not be answered.
import type { AuditDraft, AuditSink } from '@veil/sidecar';

export class DropSink implements AuditSink {
  #closed = false;

  accepting(): boolean {
    return !this.#closed;
  }

  append(_draft: AuditDraft): Promise<void> {
    return Promise.resolve();
  }

  async close(): Promise<void> {
    this.#closed = true;
  }
}
