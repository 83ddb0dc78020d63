// The evidence report as data: what the JSON file holds and the HTML renders.
import {
  type Finding,
  type StreamSummary,
  summaryLine,
  type VerifyResult,
  type VerifyTotals,
} from '@veil/core';
import type { EvidenceSet } from '../evidence/load.ts';
import { type Verdict, verdictOf } from '../evidence/verification.ts';
import { buildPopulations, type Population } from './populations.ts';
import { type Retention, retentionOf } from './retention.ts';

export const reportFormat = 'veil.report/v1';

export type ReportSource = {
  kind: EvidenceSet['kind'];
  dir: string;
  endpoint: string | null;
  bucket: string | null;
  prefix: string | null;
  pulledAt: string | null;
  from: string | null;
  before: string | null;
};

export type Report = {
  format: typeof reportFormat;
  generatedAt: string;
  source: ReportSource;
  verdict: Verdict;
  summary: string;
  totals: VerifyTotals;
  minRetentionDays: number | null;
  findings: Finding[];
  streams: StreamSummary[];
  retention: Retention;
  populations: Population[];
};

export function buildReport(
  set: EvidenceSet,
  result: VerifyResult,
  options: { now: Date; minRetentionDays: number | undefined },
): Report {
  const bucket = set.bucket;
  return {
    format: reportFormat,
    generatedAt: options.now.toISOString(),
    source: {
      kind: set.kind,
      dir: set.dir,
      endpoint: bucket?.endpoint ?? null,
      bucket: bucket?.bucket ?? null,
      prefix: bucket?.prefix ?? null,
      pulledAt: bucket?.pulledAt ?? null,
      from: bucket?.from ?? null,
      before: bucket?.before ?? null,
    },
    verdict: verdictOf(result),
    summary: summaryLine(result.totals),
    totals: result.totals,
    minRetentionDays: options.minRetentionDays ?? null,
    findings: result.findings,
    streams: result.streams,
    retention: retentionOf(set, options.now, options.minRetentionDays),
    populations: buildPopulations(result.records),
  };
}
