// The evidence verifier: a pure function from the objects of a bucket (every
// version, delete markers included) to findings. Each check has its own code so
// an auditor can tell what failed; INVALID means the evidence cannot be relied
// on, WARN that it can but something needs an explanation.

import { type Finding, noStream, type Report } from './checks/findings.ts';
import type { StoredObject, VerifyOptions } from './checks/inputs.ts';
import { groupStreams } from './checks/layout.ts';
import { type StreamSummary, verifyStream } from './checks/stream.ts';
import { sum } from './checks/sum.ts';
import { checkBucket, checkRetentionAsked, checkVersions } from './checks/versions.ts';
import { printable } from './printable.ts';
import type { AuditRecord } from './record.ts';

// The public types the checks use are declared beside them, so that no check imports this file.
export { type Finding, type FindingCode, type FindingLevel, findingCodes } from './checks/findings.ts';
export type { BucketLock, LockMode, StoredObject, TrustedKey, VerifyOptions } from './checks/inputs.ts';
export type { StreamSummary } from './checks/stream.ts';
export { retainedTooShort } from './checks/versions.ts';

export type VerifyTotals = {
  streams: number;
  batches: number;
  /** Record lines: a forwarded request has two, its first part and the record completing it. */
  records: number;
  /** Each request once, however many parts it was recorded in. */
  requests: number;
  gaps: number;
  incomplete: number;
};

export type VerifyResult = {
  findings: Finding[];
  streams: StreamSummary[];
  totals: VerifyTotals;
  /** Validated records of the batches that passed their checksum, stream by stream in seq order. */
  records: AuditRecord[];
};

export function verifyEvidence(objects: readonly StoredObject[], options: VerifyOptions): VerifyResult {
  const findings: Finding[] = [];
  const report: Report = (level, stream, key, code, message) => {
    findings.push({ level, stream, key, code, message });
  };
  checkBucket(options.bucketLock, report);
  checkRetentionAsked(options, report);
  const originals = new Map<string, StoredObject>();
  for (const [key, versions] of groupBy(objects, (object) => object.key)) {
    const original = checkVersions(key, versions, options, report);
    if (original) originals.set(key, original);
  }
  const streams: StreamSummary[] = [];
  const records: AuditRecord[] = [];
  let gaps = 0;
  let requests = 0;
  for (const layout of groupStreams(originals, report)) {
    const result = verifyStream(layout, options, report);
    streams.push(result.summary);
    // Not push(...): a stream's records past about 120,000 overflow the call stack as arguments.
    for (const record of result.records) records.push(record);
    gaps += result.gaps;
    requests += result.requests;
  }
  // A bucket that locks nothing fails every stream in it, not the verdict alone.
  const bucketInvalid = findings.some((f) => f.level === 'INVALID' && isBucketWide(f));
  for (const summary of streams) {
    summary.valid =
      !bucketInvalid && !findings.some((f) => f.level === 'INVALID' && f.stream === summary.stream);
  }
  const totals: VerifyTotals = {
    streams: streams.length,
    batches: sum(streams, (s) => s.batches),
    records: records.length,
    requests,
    gaps,
    incomplete: sum(streams, (s) => s.incomplete),
  };
  return { findings, streams, totals, records };
}

/** `INVALID <stream> <key>: <message>`. Keys and manifest fields come from the bucket: a control character in one must not forge a line of output. */
export function formatFinding(finding: Finding): string {
  return `${finding.level} ${printable(finding.stream)} ${printable(finding.key)}: ${printable(finding.message)}`;
}

export function summaryLine(totals: VerifyTotals): string {
  const line = `${totals.streams} streams, ${totals.batches} batches, ${totals.records} records verified, ${totals.gaps} gaps`;
  return totals.incomplete > 0 ? `${line}, ${totals.incomplete} incomplete` : line;
}

/** A finding about the bucket or the evidence set as a whole, not about one object in it. */
export function isBucketWide(finding: Finding): boolean {
  return finding.stream === noStream && finding.key === noStream;
}

function groupBy<T>(items: readonly T[], keyOf: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const key = keyOf(item);
    const group = groups.get(key);
    if (group) group.push(item);
    else groups.set(key, [item]);
  }
  return groups;
}
