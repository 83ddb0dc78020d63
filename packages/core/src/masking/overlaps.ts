// Overlapping matches (digits inside an IBAN, a token inside an email-like URL,
// two rules on one value) are merged so the output never holds part of a value.

export interface Hit {
  start: number;
  end: number;
  /** Index of the scanner that matched: rule order, then detector priority. */
  scanner: number;
}

/** How much of a value a scanner's replacement hides: higher hides more. */
export type Strength = (scanner: number) => number;

/**
 * The stronger replacement first, as a merged span holds values of both
 * hits; then the lower scanner, the longer match, the earlier one.
 */
function better(a: Hit, b: Hit, strength: Strength): boolean {
  const stronger = strength(a.scanner) - strength(b.scanner);
  if (stronger !== 0) return stronger > 0;
  if (a.scanner !== b.scanner) return a.scanner < b.scanner;
  const lengths = a.end - a.start - (b.end - b.start);
  return lengths !== 0 ? lengths > 0 : a.start < b.start;
}

/**
 * Merges each group of overlapping hits into one hit covering their union, named
 * by the best of them (see `better`): the strongest replacement, then the
 * first rule in policy order, within a rule the most specific detector. The
 * result is sorted and disjoint.
 */
export function resolveOverlaps(hits: readonly Hit[], strength: Strength): Hit[] {
  const sorted = [...hits].sort((a, b) => a.start - b.start || b.end - a.end || a.scanner - b.scanner);
  const merged: Hit[] = [];
  let union: Hit | undefined;
  let winner: Hit | undefined;
  for (const hit of sorted) {
    if (union !== undefined && winner !== undefined && hit.start < union.end) {
      union.end = Math.max(union.end, hit.end);
      if (better(hit, winner, strength)) winner = hit;
      union.scanner = winner.scanner;
      continue;
    }
    union = { ...hit };
    winner = hit;
    merged.push(union);
  }
  return merged;
}
