// Runs the core verifier over evidence read from disk, and says what it found
// the way `veil evidence verify` prints it.
import {
  type Finding,
  formatFinding,
  parseEvidenceKey,
  type StoredObject,
  summaryLine,
  type TrustedKey,
  type VerifyResult,
  verifyEvidence,
} from '@veil/core';
import type { EvidenceSet } from './load.ts';
import { maxObjectBytes } from './store.ts';

export type VerificationOptions = {
  now: Date;
  minRetentionDays: number | undefined;
  trustedKeys: readonly TrustedKey[] | undefined;
};

export type Verdict = 'VALID' | 'VALID WITH WARNINGS' | 'INVALID' | 'NO EVIDENCE';

export function verifySet(set: EvidenceSet, options: VerificationOptions): VerifyResult {
  const result = verifyEvidence(set.objects, {
    bucketLock: set.bucketLock,
    now: options.now,
    ...(options.minRetentionDays === undefined ? {} : { minRetentionDays: options.minRetentionDays }),
    ...(options.trustedKeys === undefined ? {} : { trustedKeys: options.trustedKeys }),
  });
  if (options.trustedKeys === undefined) result.findings.push(keysNotPinned);
  reportRefused(set, result);
  return result;
}

/**
 * A version of an evidence key that a pull refused to fetch (see store.ts) is
 * nothing a sidecar wrote. Core reports only what it misses of it, and an
 * unreferenced batch past the last manifest only as an upload cut short: the
 * version is named INVALID here, with why its bytes are absent.
 */
function reportRefused(set: EvidenceSet, result: VerifyResult): void {
  if (set.kind !== 'pulled') return;
  for (const object of set.objects.filter(isRefused)) {
    const stream = parseEvidenceKey(object.key)?.stream ?? '-';
    const version = object.versionId === undefined ? 'the object' : `version ${object.versionId}`;
    result.findings.push({
      level: 'INVALID',
      stream,
      key: object.key,
      code: 'missing-bytes',
      message: `${version} is larger than any batch or manifest (${maxObjectBytes} bytes): not fetched`,
    });
    for (const summary of result.streams) if (summary.stream === stream) summary.valid = false;
  }
}

function isRefused(object: StoredObject): boolean {
  return !object.isDeleteMarker && object.bytes === undefined && parseEvidenceKey(object.key) !== null;
}

// Each genesis registers its own key, so a stream verifies against whatever key
// wrote it: without keys collected independently, nothing says who that was.
const keysNotPinned = {
  level: 'WARN',
  stream: '-',
  key: '-',
  code: 'keys-not-pinned',
  message: 'no --trusted-keys: stream keys are checked for consistency only, not for who made them',
} as const satisfies Finding;

/** Nothing verified is no evidence: an auditor must not read it as a pass. */
export function verdictOf(result: Pick<VerifyResult, 'findings' | 'totals'>): Verdict {
  const { findings } = result;
  if (findings.some((f) => f.level === 'INVALID')) return 'INVALID';
  if (result.totals.streams === 0) return 'NO EVIDENCE';
  return findings.length > 0 ? 'VALID WITH WARNINGS' : 'VALID';
}

/** The exit code of `verify` and `report`: 1 unless the evidence verified. */
export function exitCodeOf(verdict: Verdict): number {
  return verdict === 'INVALID' || verdict === 'NO EVIDENCE' ? 1 : 0;
}

/** One line per finding, INVALID first, then the summary line. */
export function verificationLines(result: VerifyResult): string[] {
  const invalid = result.findings.filter((f) => f.level === 'INVALID');
  const warnings = result.findings.filter((f) => f.level !== 'INVALID');
  return [...invalid, ...warnings].map(formatFinding).concat(summaryLine(result.totals));
}

/** What `verify --json` prints: everything but the records themselves. */
export function verificationJson(result: VerifyResult) {
  return {
    verdict: verdictOf(result),
    summary: summaryLine(result.totals),
    totals: result.totals,
    streams: result.streams,
    findings: result.findings,
  };
}
