// Payment card numbers: 13-19 digits, bare or in groups split by spaces or dashes,
// with an issuer prefix (2-6) and a valid Luhn check digit. A run of groups may
// hold a card followed by other numbers ("4111 1111 1111 1111 2027"), so prefixes
// of whole groups are tried, longest first.
import type { DigitGroups } from '../digit-groups.ts';
import { digitCount, digitGroups } from '../digit-groups.ts';
import type { Finder, Span } from '../finder.ts';
import { withoutSeparators } from '../finder.ts';
import { luhnValid } from '../validators.ts';

const run = /(?<![\w.#/+-])\d[\d -]{11,46}\d(?!\w|[.,]\d)/g;
// Digits that continue "DE89 …" or "GB82 WEST …" belong to an IBAN (perhaps a
// mistyped one), not a card.
const ibanHead = /(?<![A-Za-z0-9])[A-Z]{2}\d{2} (?:[A-Z0-9]{4} )?(?:[A-Z0-9]{4} )?$/i;

/** Visa 4, Mastercard 2/5, Amex 34/37, Diners 30/36/38/39, JCB 35, Discover and UnionPay 6. */
const issuerPrefix = /^(?:[2456]|3[0456789])/;

/** 4-4-4-4 style (last group 1-4), or Amex / Diners 4-6-5 and 4-6-4. */
function groupingValid(lengths: number[]): boolean {
  if (lengths.length === 1) return true;
  const last = lengths.length - 1;
  if (lengths.every((length, i) => length === 4 || (i === last && length >= 1 && length <= 4))) return true;
  return (
    lengths.length === 3 && lengths[0] === 4 && lengths[1] === 6 && (lengths[2] === 5 || lengths[2] === 4)
  );
}

function windowValid(candidate: string, parsed: DigitGroups, from: number, to: number): boolean {
  const count = digitCount(parsed, from, to);
  if (count < 13 || count > 19) return false;
  const separators = parsed.separators.slice(from, to);
  if (separators.some((s) => s !== ' ' && s !== '-') || new Set(separators).size > 1) return false;
  const groups = parsed.groups.slice(from, to + 1);
  if (!groupingValid(groups.map((g) => g.end - g.start))) return false;
  const digits = groups.map((g) => candidate.slice(g.start, g.end)).join('');
  return issuerPrefix.test(digits) && luhnValid(digits);
}

/**
 * Cards in a run of digit groups. Each card must start where the run does or
 * right after the previous card: windows starting mid-run would let the tail of
 * a longer number pass Luhn by chance.
 */
function cardsIn(candidate: string, offset: number): Span[] {
  const parsed = digitGroups(candidate);
  const spans: Span[] = [];
  let from = 0;
  while (from < parsed.groups.length) {
    let to = parsed.groups.length - 1;
    while (to >= from && !windowValid(candidate, parsed, from, to)) to--;
    const first = parsed.groups[from];
    const last = parsed.groups[to];
    if (to < from || first === undefined || last === undefined) break;
    spans.push({ start: offset + first.start, end: offset + last.end });
    from = to + 1;
  }
  return spans;
}

function findCards(text: string): Span[] {
  const spans: Span[] = [];
  run.lastIndex = 0;
  for (let match = run.exec(text); match !== null; match = run.exec(text)) {
    if (ibanHead.test(text.slice(Math.max(0, match.index - 16), match.index))) continue;
    spans.push(...cardsIn(match[0], match.index));
  }
  return spans;
}

export const paymentCard: Finder = {
  id: 'payment-card',
  label: 'PAYMENT_CARD',
  mayMatch: (_text, features) => features.numberRun,
  find: findCards,
  normalize: withoutSeparators,
};
