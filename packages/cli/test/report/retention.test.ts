import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type StoredObject, sha256Base64 } from '@veil/core';
import type { EvidenceSet } from '../../src/evidence/load.ts';
import { verifySet } from '../../src/evidence/verification.ts';
import { renderHtml } from '../../src/report/html.ts';
import { buildReport, type Report } from '../../src/report/model.ts';
import { buildStream } from '../support/evidence.ts';

const now = new Date('2025-06-03T00:00:00.000Z');
const dayMs = 86_400_000;
const writtenAt = new Date(now.getTime() - dayMs);

/** A pulled set whose every version is locked in COMPLIANCE for `days` after it was written. */
function lockedFor(days: number): EvidenceSet {
  const built = buildStream({ batches: [[0, 1], [2]] });
  const objects: StoredObject[] = built.objects.map((o, index) => ({
    key: o.key,
    versionId: `v${index}`,
    isLatest: true,
    isDeleteMarker: false,
    bytes: o.bytes,
    lastModified: writtenAt,
    checksumSha256: sha256Base64(o.bytes),
    lockMode: 'COMPLIANCE',
    retainUntil: new Date(writtenAt.getTime() + days * dayMs),
  }));
  return {
    kind: 'pulled',
    dir: 'evidence',
    bucket: {
      format: 'veil.pull/v1',
      endpoint: null,
      bucket: 'veil-evidence',
      prefix: 'v1/',
      from: null,
      before: null,
      pulledAt: now.toISOString(),
      versioning: 'Enabled',
      objectLock: { enabled: true, mode: 'COMPLIANCE', days: 1, years: null },
    },
    bucketLock: { enabled: true, mode: 'COMPLIANCE' },
    objects,
    refused: [],
  };
}

function reportOf(set: EvidenceSet, minRetentionDays: number | undefined): Report {
  const result = verifySet(set, { now, minRetentionDays, trustedKeys: undefined });
  return buildReport(set, result, { now, minRetentionDays });
}

/** The class of each object-version row of the HTML retention table. */
function objectRowClasses(html: string): string[] {
  const table = html.slice(html.indexOf('<h3>Object versions</h3>'), html.indexOf('id="populations"'));
  return [...table.matchAll(/<tr(?: class="(\w+)")?><td>v1\//g)].map((m) => m[1] ?? '');
}

test('a lock shorter than the minimum asked for is too short in the retention table, as the findings say', () => {
  const set = lockedFor(5);
  const report = reportOf(set, 365);
  const tooShort = report.findings.filter((f) => f.code === 'retention-too-short');
  assert.equal(report.verdict, 'INVALID');
  assert.equal(tooShort.length, set.objects.length);
  assert.equal(report.retention.counts['too-short'], tooShort.length);
  assert.equal(report.retention.counts.locked, 0);
  assert.deepEqual(
    report.retention.objects.map((o) => o.status),
    set.objects.map(() => 'too-short'),
  );
  // Still locked, though too short: the first lock to run out is one of them.
  assert.equal(report.retention.earliestRetainUntil, new Date(writtenAt.getTime() + 5 * dayMs).toISOString());
  const html = renderHtml(report);
  assert.ok(html.includes('<li><b>0</b>Versions locked</li>'), 'no version counted as locked');
  assert.ok(
    html.includes(`<td>locked (COMPLIANCE), too short</td><td class="num">${set.objects.length}</td>`),
  );
  assert.deepEqual(
    objectRowClasses(html),
    set.objects.map(() => 'bad'),
  );
});

test('a lock long enough is locked, and its rows are not highlighted', () => {
  const set = lockedFor(400);
  const report = reportOf(set, 365);
  assert.deepEqual(
    report.findings.map((f) => f.code),
    ['keys-not-pinned'],
  );
  assert.equal(report.retention.counts.locked, set.objects.length);
  assert.equal(report.retention.counts['too-short'], 0);
  const html = renderHtml(report);
  assert.ok(html.includes(`<li><b>${set.objects.length}</b>Versions locked</li>`));
  assert.deepEqual(
    objectRowClasses(html),
    set.objects.map(() => ''),
  );
});

test('without a minimum, no lock is judged too short, and the findings warn the length went unchecked', () => {
  const report = reportOf(lockedFor(5), undefined);
  assert.equal(report.verdict, 'VALID WITH WARNINGS');
  assert.deepEqual(
    report.findings.map((f) => f.code),
    ['retention-not-checked', 'keys-not-pinned'],
  );
  assert.equal(report.retention.counts['too-short'], 0);
  assert.equal(report.retention.counts.locked, report.retention.objects.length);
});
