import type { AuditRecordInput } from '@veil/core';

/**
 * A record as the request path knows it; the sink adds where and when in the
 * stream it falls. `id` is the sink's to choose unless the draft brings one,
 * for a record a later one must name (see `newRecordId`).
 */
export type AuditDraft = Omit<AuditRecordInput, 'id' | 'stream' | 'seq' | 'pod'> & { id?: string };

/**
 * `durable`: the record is on disk. `queued`: the record has its place and seq
 * in the stream and becomes durable with the next group commit, so a crash
 * before it may still lose it.
 */
export type AppendUntil = 'durable' | 'queued';

export interface AuditSink {
  /** False when new records cannot be taken (a full spool): new requests then fail closed. */
  accepting(): boolean;
  /**
   * Resolves once the record is as far as `until` says (`durable` by default).
   * Throws at once when the sink will not take the record (closed, or no room),
   * so a caller can tell before it acts; rejects when a record it took could not
   * be made durable. What the request path waits for before it answers is
   * proxy/record.ts's to say.
   */
  append(draft: AuditDraft, until?: AppendUntil): Promise<void>;
  /**
   * True once a write has failed: the sink takes no record again in this
   * process, and only a restart, whose recovery cuts the failed write off,
   * serves again. Absent: it never fails so.
   */
  failed?(): boolean;
  close(): Promise<void>;
}
