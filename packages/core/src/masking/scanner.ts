// Masking one string with an ordered list of scanners.
import { MaskingError } from './errors.ts';
import type { Finder } from './finder.ts';
import { textFeatures } from './finder.ts';
import type { MaskOperator, Replace } from './operators.ts';
import type { Hit } from './overlaps.ts';
import { resolveOverlaps } from './overlaps.ts';
import type { Reading } from './reading.ts';
import { hasHiddenForms, readingOf, readValue, writtenSpan } from './reading.ts';

/** A finder bound to the rule that asked for it; earlier scanners win ties. */
export interface Scanner {
  readonly finder: Finder;
  readonly rule: string;
  readonly operator: MaskOperator;
  readonly replace: Replace;
}

function collectHits(text: string, scanners: readonly Scanner[]): Hit[] {
  const features = textFeatures(text);
  const hits: Hit[] = [];
  for (let i = 0; i < scanners.length; i++) {
    const finder = scanners[i]?.finder;
    if (finder === undefined || !finder.mayMatch(text, features)) continue;
    for (const span of finder.find(text)) {
      if (span.start < 0 || span.end > text.length || span.end <= span.start) {
        throw new MaskingError(`detector ${finder.id} returned an invalid span`);
      }
      hits.push({ start: span.start, end: span.end, scanner: i });
    }
  }
  return hits;
}

function hitsIn(reading: Reading, scanners: readonly Scanner[]): Hit[] {
  return collectHits(reading.text, scanners).map((hit) => ({
    ...writtenSpan(reading, hit.start, hit.end),
    scanner: hit.scanner,
  }));
}

/**
 * Hits in the text as the model reads it, as written spans. Added to the hits
 * in the text as written, not put in their place: a character skipped in the
 * reading may join a value to its neighbour and hide it there. Where one
 * joined two digits, the reading with a space in its place is scanned too.
 */
function hitsInReading(text: string, scanners: readonly Scanner[]): Hit[] {
  const reading = readingOf(text);
  const hits = hitsIn(reading, scanners);
  if (reading.joinsDigits) appendHits(hits, hitsIn(readingOf(text, true), scanners));
  return hits;
}

/** Not push(...): a megabyte of short values holds more hits than a call takes arguments. */
function appendHits(hits: Hit[], more: readonly Hit[]): void {
  for (const hit of more) hits.push(hit);
}

/**
 * How much each operator hides. A merged span may hold one rule's value
 * whole and another's in part: `mask` over both would leave the last
 * characters of a value that a `redact` rule asked to hide.
 */
const operatorStrength: Readonly<Record<MaskOperator, number>> = { mask: 0, hash: 1, redact: 2, drop: 3 };

/** Where scanners match in text, overlaps merged; sorted and disjoint. */
export function matchText(text: string, scanners: readonly Scanner[]): Hit[] {
  if (scanners.length === 0 || text.length === 0) return [];
  const hits = collectHits(text, scanners);
  if (hasHiddenForms(text)) appendHits(hits, hitsInReading(text, scanners));
  if (hits.length === 0) return hits;
  return resolveOverlaps(hits, (i) => operatorStrength[scanners[i]?.operator ?? 'drop']);
}

/**
 * The value as read, in NFC, as its detector normalises it: "é" written as
 * "e" and a combining acute is the one code point "é", and hashes as it does.
 */
function hashInput(finder: Finder, value: string): string {
  return finder.normalize(readValue(value).normalize('NFC'));
}

/** The text with every match replaced; `onMatch` hears of each replacement. */
export function maskText(
  text: string,
  scanners: readonly Scanner[],
  onMatch: (scanner: Scanner) => void,
): string {
  const hits = matchText(text, scanners);
  if (hits.length === 0) return text;
  let masked = '';
  let position = 0;
  for (const hit of hits) {
    const scanner = scanners[hit.scanner];
    if (scanner === undefined) throw new MaskingError('match from an unknown scanner');
    const value = text.slice(hit.start, hit.end);
    masked +=
      text.slice(position, hit.start) +
      scanner.replace(value, scanner.finder.label, hashInput(scanner.finder, value));
    position = hit.end;
    onMatch(scanner);
  }
  return masked + text.slice(position);
}
