import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { StoredObject } from '@veil/core';
import type { EvidenceSet } from '../../src/evidence/load.ts';
import { verifySet } from '../../src/evidence/verification.ts';
import { escapeHtml, maxHtmlRows, renderHtml } from '../../src/report/html.ts';
import { buildReport, type Report } from '../../src/report/model.ts';
import { buildStream, sampleRecord } from '../support/evidence.ts';

const now = new Date('2025-06-03T00:00:00.000Z');
const hostile = '<script>alert(1)</script>';

function hostileReport(): Report {
  const built = buildStream({
    batches: [[0, 1, 2, 3]],
    recordFor: (stream, seq, ref) => ({
      ...sampleRecord(stream, seq, ref),
      identity: {
        issuer: 'https://issuer.example',
        subject: hostile,
        groups: ['"><img src=x onerror=alert(2)>'],
      },
      error: 'it\'s <b>bold</b> & "quoted"',
    }),
  });
  const objects: StoredObject[] = built.objects.map((o) => ({
    key: o.key,
    isLatest: true,
    isDeleteMarker: false,
    bytes: o.bytes,
  }));
  // A foreign object: its key shows up in a finding and in the retention table.
  objects.push({ key: `v1/${hostile}.txt`, isLatest: true, isDeleteMarker: false, bytes: new Uint8Array() });
  const set: EvidenceSet = {
    kind: 'local',
    dir: `/evidence/${hostile}`,
    bucket: null,
    bucketLock: 'local',
    objects,
    refused: [],
  };
  const result = verifySet(set, { now, minRetentionDays: undefined, trustedKeys: undefined });
  return buildReport(set, result, { now, minRetentionDays: undefined });
}

/** Every opened element is closed in order (void elements aside): the document nests. */
function assertBalanced(html: string): void {
  const voids = new Set(['meta', 'br', 'hr', 'img', 'link', 'input']);
  const stack: string[] = [];
  for (const match of html.matchAll(/<(\/?)([a-zA-Z][a-zA-Z0-9]*)\b[^>]*>/g)) {
    const [, closing, name = ''] = match;
    const tag = name.toLowerCase();
    if (voids.has(tag)) continue;
    if (!closing) stack.push(tag);
    else assert.equal(stack.pop(), tag, `</${tag}> closes <${stack.at(-1)}> at ${match.index}`);
  }
  assert.deepEqual(stack, []);
}

test('escapeHtml escapes the five characters that matter', () => {
  assert.equal(escapeHtml(`<a href="x">'&'</a>`), '&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
});

test('every value from the evidence is escaped: no markup gets through', () => {
  const html = renderHtml(hostileReport());
  assert.ok(!html.includes('<script'), 'no script element');
  assert.ok(!html.includes('<img'), 'no injected element');
  assert.ok(!html.includes('<b>bold'), 'no injected markup');
  assert.ok(html.includes('&lt;script&gt;alert(1)&lt;/script&gt;'));
  assert.ok(html.includes('&quot;&gt;&lt;img src=x onerror=alert(2)&gt;'));
  assert.ok(html.includes('it&#39;s &lt;b&gt;bold&lt;/b&gt; &amp; &quot;quoted&quot;'));
  assertBalanced(html);
});

test('the file is self-contained: inline CSS, nothing fetched, no script', () => {
  const html = renderHtml(hostileReport());
  assert.match(html, /^<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">/);
  assert.match(html, /<style>[^<]+<\/style>/);
  assert.doesNotMatch(html, /<link|<script|@import|url\(|\bsrc=["']|href=["']?(?:https?:|\/\/)/i);
});

test('the summary comes first: verdict and totals before any table', () => {
  const html = renderHtml(hostileReport());
  const verdict = html.indexOf('<div class="verdict warn">VALID WITH WARNINGS</div>');
  assert.ok(verdict > 0);
  assert.ok(verdict < html.indexOf('<table'));
  assert.ok(html.indexOf('<b>4</b>Records verified') > verdict);
  assert.ok(html.indexOf('id="findings"') < html.indexOf('id="populations"'));
});

test('long tables show their first rows and say where the rest is', () => {
  const report = hostileReport();
  const requests = report.populations[0];
  assert.ok(requests);
  const row = requests.rows[0] ?? [];
  requests.rows = Array.from({ length: maxHtmlRows + 7 }, () => row);
  const html = renderHtml(report);
  assert.ok(html.includes(`Showing the first ${maxHtmlRows} of ${maxHtmlRows + 7} rows`));
});
