// Measures the built-in detectors against the labelled corpus and prints a
// precision / recall table. A predicted span counts for a labelled one when it
// names the same detector and covers it (merged overlaps may cover more).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { z } from 'zod';
import type { DetectedSpan } from '../../src/masking/index.ts';
import { detectSpans } from '../../src/masking/index.ts';
import { type DetectorName, detectorNames } from '../../src/policy/schema.ts';
import { buildCorpus, serializeCorpus } from '../testdata/masking/generate.ts';

const corpusUrl = new URL('../testdata/masking/corpus.json', import.meta.url);
const corpusText = readFileSync(corpusUrl, 'utf8');

const corpusSchema = z.array(
  z
    .object({
      tag: z.string().min(1),
      text: z.string(),
      spans: z.array(
        z.object({
          detector: z.enum(detectorNames),
          start: z.number().int(),
          end: z.number().int(),
          value: z.string(),
        }),
      ),
    })
    .strict(),
);
const corpus = corpusSchema.parse(JSON.parse(corpusText));

interface Tally {
  tp: number;
  fp: number;
  fn: number;
  exact: number;
}

const tallies = new Map<string, Tally>(
  detectorNames.map((name) => [name, { tp: 0, fp: 0, fn: 0, exact: 0 }]),
);
const misses: string[] = [];

function tally(name: string): Tally {
  const found = tallies.get(name);
  assert.ok(found, `unknown detector ${name}`);
  return found;
}

for (const entry of corpus) {
  const predicted: DetectedSpan[] = detectSpans(entry.text);
  const used = new Set<DetectedSpan>();
  for (const expected of entry.spans) {
    const hit = predicted.find(
      (p) => p.detector === expected.detector && p.start <= expected.start && p.end >= expected.end,
    );
    const counts = tally(expected.detector);
    if (hit === undefined) {
      counts.fn++;
      misses.push(`missed ${expected.detector} [${entry.tag}]: ${JSON.stringify(entry.text)}`);
      continue;
    }
    used.add(hit);
    counts.tp++;
    if (hit.start === expected.start && hit.end === expected.end) counts.exact++;
  }
  for (const p of predicted) {
    if (used.has(p)) continue;
    tally(p.detector).fp++;
    misses.push(`false ${p.detector} [${entry.tag}]: ${JSON.stringify(entry.text.slice(p.start, p.end))}`);
  }
}

const ratio = (num: number, den: number): number => (den === 0 ? 1 : num / den);
const total = [...tallies.values()].reduce(
  (sum, t) => ({ tp: sum.tp + t.tp, fp: sum.fp + t.fp, fn: sum.fn + t.fn, exact: sum.exact + t.exact }),
  { tp: 0, fp: 0, fn: 0, exact: 0 },
);

function row(name: string, t: Tally): string {
  const cells = [
    name.padEnd(14),
    String(t.tp + t.fn).padStart(5),
    String(t.tp).padStart(5),
    String(t.fp).padStart(5),
    String(t.fn).padStart(5),
    ratio(t.tp, t.tp + t.fp)
      .toFixed(3)
      .padStart(9),
    ratio(t.tp, t.tp + t.fn)
      .toFixed(3)
      .padStart(7),
  ];
  return cells.join(' ');
}

/**
 * The least recall each detector must keep on this corpus. Checksum-validated
 * detectors find every labelled value; the others may miss a few, but one that
 * found nothing, or missed one in ten, fails.
 */
const recallFloors: Record<DetectorName, number> = {
  email: 0.9,
  phone: 0.9,
  ssn: 0.9,
  'payment-card': 1,
  iban: 1,
  ipv4: 0.9,
  ipv6: 0.9,
  jwt: 0.9,
  'private-key': 0.9,
  'aws-key': 0.9,
  'gcp-key': 0.9,
  'github-token': 0.9,
};

test('prints precision and recall for every detector', () => {
  const header = `${'detector'.padEnd(14)} label    tp    fp    fn precision recall`;
  const rows = detectorNames.map((name) => row(name, tally(name)));
  console.log([header, ...rows, row('overall', total), ...misses].join('\n'));
  for (const [i, name] of detectorNames.entries()) {
    assert.match(
      rows[i] ?? '',
      new RegExp(`^${name} +\\d+ +\\d+ +\\d+ +\\d+ +[01]\\.\\d{3} +[01]\\.\\d{3}$`),
    );
  }
});

test('each detector keeps its recall floor; checksum-validated ones find every labelled value', () => {
  for (const name of detectorNames) {
    const { tp, fn } = tally(name);
    const recall = ratio(tp, tp + fn);
    assert.ok(
      recall >= recallFloors[name],
      `${name}: recall ${recall.toFixed(3)} (${tp} of ${tp + fn}) is below ${recallFloors[name]}`,
    );
  }
});

test('the committed corpus is what the generator makes', () => {
  assert.equal(corpusText, serializeCorpus(buildCorpus()));
});

test('the corpus is large enough and its labels are consistent', () => {
  const positives = corpus.reduce((n, e) => n + e.spans.length, 0);
  const negatives = corpus.filter((e) => e.spans.length === 0).length;
  assert.ok(positives >= 300, `${positives} labelled spans`);
  assert.ok(negatives >= 300, `${negatives} hard negatives`);
  for (const name of detectorNames)
    assert.ok(tally(name).tp + tally(name).fn >= 10, `${name} has few examples`);
  for (const entry of corpus) {
    for (const span of entry.spans) assert.equal(entry.text.slice(span.start, span.end), span.value);
  }
  for (const tag of [
    'payment-card-bad-luhn',
    'iban-bad-checksum',
    'uuid',
    'version',
    'isbn',
    'hash',
    'tracking',
  ]) {
    assert.ok(
      corpus.some((e) => e.tag === tag && e.spans.length === 0),
      `no ${tag} negatives`,
    );
  }
});

test('overall precision is at least 0.98 and recall at least 0.95', () => {
  assert.ok(
    ratio(total.tp, total.tp + total.fp) >= 0.98,
    `precision ${ratio(total.tp, total.tp + total.fp)}`,
  );
  assert.ok(ratio(total.tp, total.tp + total.fn) >= 0.95, `recall ${ratio(total.tp, total.tp + total.fn)}`);
});

test('found spans are exact for at least 95% of labelled values', () => {
  assert.ok(ratio(total.exact, total.tp) >= 0.95, `${total.exact} of ${total.tp} exact`);
});
