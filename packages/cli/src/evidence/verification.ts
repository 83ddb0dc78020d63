// Runs the core verifier over evidence read from disk, and says what it found
// the way `veil evidence verify` prints it.
import {
  type Finding,
  formatFinding,
  parseEvidenceKey,
  summaryLine,
  type TrustedKey,
  type VerifyResult,
  verifyEvidence,
} from '@veil/core';
import type { EvidenceSet } from './load.ts';
import { maxEvidenceBytes, type ObjectMeta } from './store.ts';

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
 * nothing a sidecar wrote. Core reports only that it misses the bytes of a
 * manifest or of a batch a manifest describes, and an unreferenced batch past
 * the last manifest only as an upload cut short: each such key is one INVALID
 * finding here, in place of core's, saying why its bytes are absent.
 */
function reportRefused(set: EvidenceSet, result: VerifyResult): void {
  const refused = new Map<string, Finding>();
  for (const [key, versions] of Map.groupBy(set.refused, (meta) => meta.key)) {
    refused.set(key, refusedFinding(key, versions));
  }
  if (refused.size === 0) return;
  const findings: Finding[] = [];
  const placed = new Set<string>();
  for (const finding of result.findings) {
    const replacement = finding.code === 'missing-bytes' ? refused.get(finding.key) : undefined;
    if (replacement === undefined) findings.push(finding);
    else if (!placed.has(finding.key)) {
      findings.push(replacement);
      placed.add(finding.key);
    }
  }
  for (const [key, finding] of refused) if (!placed.has(key)) findings.push(finding);
  result.findings = findings;
  const streams = new Set([...refused.values()].map((finding) => finding.stream));
  for (const summary of result.streams) if (streams.has(summary.stream)) summary.valid = false;
}

/** One finding for the refused versions of a key, with the size that had them refused. */
function refusedFinding(key: string, versions: readonly ObjectMeta[]): Finding {
  const parsed = parseEvidenceKey(key);
  const [first, ...others] = versions;
  const size = first === undefined || first.size === null ? 'of unknown size' : `${first.size} bytes`;
  const more = others.length > 0 ? ` (and ${others.length} more)` : '';
  const limit = `larger than any ${parsed?.kind ?? 'object'} can be (${maxEvidenceBytes(key)} bytes)`;
  return {
    level: 'INVALID',
    stream: parsed?.stream ?? '-',
    key,
    code: 'missing-bytes',
    message: `version ${first?.versionId}${more} is ${size}, ${limit}: not fetched`,
  };
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
