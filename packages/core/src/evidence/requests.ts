// A request forwarded to the model is recorded in two parts (see `recordKinds`):
// counted or listed as they are, such requests would count twice, and their
// first parts would read as crashes. These helpers pair the parts, so that
// whoever counts requests counts each once.
import type { AuditRecord } from './record.ts';

/** A record whose `completes` names no first part it may complete. */
export type MismatchedCompletion = { record: AuditRecord; reason: string };

export type Completions = {
  /** Each completed first part, with the record that completes it. */
  completedBy: Map<AuditRecord, AuditRecord>;
  mismatched: MismatchedCompletion[];
};

/**
 * Pairs each record that `completes` another with its first part: an
 * `incomplete` request record of the same stream, at a lower seq, completed
 * by no other record. Records may come in any order and from many streams.
 */
export function matchCompletions(records: readonly AuditRecord[]): Completions {
  const byId = new Map<string, AuditRecord>();
  const completers: AuditRecord[] = [];
  for (const record of records) {
    byId.set(idKey(record.stream, record.id), record);
    if (record.completes !== undefined) completers.push(record);
  }
  // In seq order, so that of two records completing one part the first one holds.
  completers.sort((a, b) => (a.stream < b.stream ? -1 : a.stream > b.stream ? 1 : a.seq - b.seq));
  const completedBy = new Map<AuditRecord, AuditRecord>();
  const mismatched: MismatchedCompletion[] = [];
  for (const record of completers) {
    const part = byId.get(idKey(record.stream, record.completes ?? ''));
    const reason = mismatch(record, part, part && completedBy.get(part));
    if (reason !== undefined) mismatched.push({ record, reason });
    else if (part) completedBy.set(part, record);
  }
  return { completedBy, mismatched };
}

function mismatch(
  record: AuditRecord,
  part: AuditRecord | undefined,
  earlier: AuditRecord | undefined,
): string | undefined {
  if (record.kind !== 'request' || record.outcome === 'incomplete') {
    return `an ${record.outcome} ${record.kind} record completes nothing`;
  }
  if (!part) return 'no record of its stream has that id';
  if (part.kind !== 'request' || part.outcome !== 'incomplete') {
    return `seq ${part.seq} is no incomplete request record`;
  }
  if (part.seq >= record.seq) return `seq ${part.seq} does not come before it`;
  if (earlier) return `seq ${part.seq} is completed already, by seq ${earlier.seq}`;
  return undefined;
}

function idKey(stream: string, id: string): string {
  return `${stream}\n${id}`;
}

/**
 * The records with every completed first part left out, in their order: each
 * request then has one record, its full one, or its first part alone when it
 * was never completed (an `incomplete` request).
 */
export function effectiveRecords(records: readonly AuditRecord[]): AuditRecord[] {
  const { completedBy } = matchCompletions(records);
  return completedBy.size === 0 ? [...records] : records.filter((record) => !completedBy.has(record));
}
