import { type AuditRecordInput, createUlidGenerator, encodeRecordLine } from '@veil/core';
import type { AuditDraft } from './sink.ts';

export interface StreamIdentity {
  readonly pod: { namespace: string; name: string; uid: string };
  /** Distinguishes restarts of the same pod: each is its own stream. */
  readonly incarnation: string;
}

export function streamName(identity: StreamIdentity): string {
  return `${identity.pod.uid}/${identity.incarnation}`;
}

/** Turns drafts into record lines of one stream, numbering them from firstSeq. */
export class RecordEncoder {
  readonly #stream: string;
  readonly #pod: StreamIdentity['pod'];
  readonly #ulid = createUlidGenerator();

  constructor(identity: StreamIdentity) {
    this.#stream = streamName(identity);
    this.#pod = identity.pod;
  }

  get stream(): string {
    return this.#stream;
  }

  encode(draft: AuditDraft, seq: number): string {
    const record: AuditRecordInput = {
      ...draft,
      id: this.#ulid(),
      stream: this.#stream,
      seq,
      pod: this.#pod,
    };
    return encodeRecordLine(record);
  }
}
