import type { AuditRecordInput } from '@veil/core';

/** A record as the request path knows it; the sink adds where and when in the stream it falls. */
export type AuditDraft = Omit<AuditRecordInput, 'id' | 'stream' | 'seq' | 'pod'>;

export interface AuditSink {
  /** False when new records cannot be taken (a full spool): new requests then fail closed. */
  accepting(): boolean;
  /** Resolves once the record is durable; only then may the response be released. */
  append(draft: AuditDraft): Promise<void>;
  close(): Promise<void>;
}
