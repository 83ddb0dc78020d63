import { randomBytes } from 'node:crypto';
import {
  type AuditRecordInput,
  createUlidGenerator,
  encodeRecordLine,
  type StreamRef,
  streamId,
} from '@veil/core';
import type { AuditDraft } from './sink.ts';

export interface StreamIdentity {
  /** The configuration's default, `local`, when absent. */
  readonly cluster?: string;
  readonly pod: { namespace: string; name: string; uid: string };
  /** Distinguishes restarts of the same pod: each is its own stream. */
  readonly incarnation: string;
}

export function streamRef(identity: StreamIdentity): StreamRef {
  return {
    cluster: identity.cluster ?? 'local',
    namespace: identity.pod.namespace,
    podUid: identity.pod.uid,
    incarnation: identity.incarnation,
  };
}

/**
 * A new incarnation for each sidecar process: the start time (UTC, to the
 * millisecond) so streams sort in the order they began, plus randomness so two
 * starts in one millisecond still differ.
 */
export function newIncarnation(now = new Date()): string {
  const time = now.toISOString().replace(/[-:.]/g, '');
  return `${time}-${randomBytes(4).toString('hex')}`;
}

// One generator for the whole process: ids chosen by the request path and by
// the encoder still sort in the order they were made.
const recordIds = createUlidGenerator();

/** An id for a draft that a later record will name; take it just before appending the draft. */
export function newRecordId(): string {
  return recordIds();
}

/** Turns drafts into record lines of one stream; the caller numbers them. */
export class RecordEncoder {
  readonly #stream: string;
  readonly #pod: StreamIdentity['pod'];

  constructor(identity: StreamIdentity) {
    // core's spelling: the verifier checks records against their object keys.
    this.#stream = streamId(streamRef(identity));
    this.#pod = identity.pod;
  }

  get stream(): string {
    return this.#stream;
  }

  encode(draft: AuditDraft, seq: number): string {
    const record: AuditRecordInput = {
      ...draft,
      id: draft.id ?? recordIds(),
      stream: this.#stream,
      seq,
      pod: this.#pod,
    };
    return encodeRecordLine(record);
  }
}
