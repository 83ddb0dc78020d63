// Payment card numbers: 13-19 digits, bare or in groups split by spaces, dashes
// or dashes between spaces ("4111 – 1111 – …", as typeset text writes them),
// with an issuer prefix and a valid Luhn check digit. A run of groups may
// hold a card among other numbers ("4111 1111 1111 1111 2027"), so windows of
// whole groups are tried, longest first. Up to three spaces count as one, as
// tokenizers read any run of white space as one.
import type { DigitGroups } from '../digit-groups.ts';
import { digitGroups, longestValidPrefix } from '../digit-groups.ts';
import type { Finder, Span } from '../finder.ts';
import { withoutSeparators } from '../finder.ts';
import { luhnValid } from '../validators.ts';

// A number run into a word, or after '.', '#', '/', '+' or '-', is a product
// code, order number, version, path or sum ("SKU-4111…", "#4111…", "v4.111…"),
// unless a card label comes right before that punctuation: "Card #4111…",
// "Acct#…", "Card No.4111…", "card-4111…", "cc_4111…", "/card/4111…".
const cardLabel = String.raw`(?<![A-Za-z])(?:card|cc|acct|account|pan|no|nr|num|number) ?[#._/-]`;
const run = new RegExp(String.raw`(?:(?<![\w.#/+-])|(?<=${cardLabel}))\d[\d -]{11,46}\d(?!\w|[.,]\d)`, 'gi');
// Digits that continue "DE89 …" or "GB82 WEST …" belong to an IBAN (perhaps a
// mistyped one), not a card.
const ibanHead = /(?<![A-Za-z0-9])[A-Z]{2}\d{2} {1,3}(?:[A-Z0-9]{4} {1,3})?(?:[A-Z0-9]{4} {1,3})?$/i;

const cardSeparators = new Set([' ', '-', ' - ']);

/** A separator as read: a run of up to three spaces is one. */
const readSeparator = (separator: string): string => separator.replace(/ {2,3}/g, ' ');

/**
 * Visa 4, Mastercard 2/5, Amex 34/37, Diners 30/36/38/39, JCB 35, Discover,
 * UnionPay and RuPay 6, RuPay 508/81/82, Troy 9792; UATP 1, whose cards have
 * 15 digits.
 */
const issuerPrefix = /^(?:[2456]|3[0456789]|8[12]|9792)/;
/** What a card's first group may open with: its issuer's digits, as far as four of them tell. */
const issuerOpening = /^(?:[2456]|3[0456789]|8[12]|9792|1)/;

function issuerValid(digits: string): boolean {
  return issuerPrefix.test(digits) || (digits.length === 15 && digits.startsWith('1'));
}

/** 4-4-4-4 style (last group 1-4), or Amex / Diners 4-6-5 and 4-6-4, or UATP 4-5-6. */
function groupingValid(lengths: number[]): boolean {
  if (lengths.length === 1) return true;
  const last = lengths.length - 1;
  if (lengths.every((length, i) => length === 4 || (i === last && length >= 1 && length <= 4))) return true;
  return lengths.length === 3 && ['4,6,5', '4,6,4', '4,5,6'].includes(lengths.join(','));
}

/**
 * Whether groups from..to make a card; `digitsBefore[i]` is the number of
 * digits in the groups before i, so the count is known before anything is built.
 */
function windowValid(
  candidate: string,
  parsed: DigitGroups,
  digitsBefore: readonly number[],
  from: number,
  to: number,
): boolean {
  const count = (digitsBefore[to + 1] ?? 0) - (digitsBefore[from] ?? 0);
  if (count < 13 || count > 19) return false;
  const separators = parsed.separators.slice(from, to);
  if (separators.some((s) => !cardSeparators.has(s)) || new Set(separators).size > 1) return false;
  const groups = parsed.groups.slice(from, to + 1);
  if (!groupingValid(groups.map((g) => g.end - g.start))) return false;
  const digits = groups.map((g) => candidate.slice(g.start, g.end)).join('');
  return issuerValid(digits) && luhnValid(digits);
}

/**
 * Whether the group before `from` would carry on the grouping of the window
 * from..to: "4603 4573 7565 8667 278" is one number, and its tail no card.
 */
function continuesBack(parsed: DigitGroups, from: number, to: number): boolean {
  if (new Set(parsed.separators.slice(from - 1, to)).size > 1) return false;
  return groupingValid(parsed.groups.slice(from - 1, to + 1).map((g) => g.end - g.start));
}

/**
 * Cards in a run of digit groups. A card starts at a group, never inside one:
 * the tail of a long bare number would pass Luhn one time in ten. A group no
 * card starts at is passed over, as a number before a card may be
 * ("qty 2 4111 1111 1111 1111"), unless the card would carry on its grouping.
 */
function cardsIn(candidate: string, offset: number): Span[] {
  const written = digitGroups(candidate);
  const parsed: DigitGroups = { groups: written.groups, separators: written.separators.map(readSeparator) };
  // Windows from every group are tried: counting their digits must not cost a pass each.
  const digitsBefore = [0];
  for (const group of parsed.groups) digitsBefore.push((digitsBefore.at(-1) ?? 0) + group.end - group.start);
  const spans: Span[] = [];
  let passedOver = false;
  let from = 0;
  while (from < parsed.groups.length) {
    const startsCard = (to: number) =>
      windowValid(candidate, parsed, digitsBefore, from, to) &&
      !(passedOver && continuesBack(parsed, from, to));
    const to = mayOpenCard(candidate, parsed, from) ? longestValidPrefix(parsed, from + 1, startsCard) : -1;
    const first = parsed.groups[from];
    const last = parsed.groups[to];
    passedOver = to === -1;
    if (first !== undefined && last !== undefined)
      spans.push({ start: offset + first.start, end: offset + last.end });
    from = Math.max(from, to) + 1;
  }
  return spans;
}

/**
 * What every window from `from` would check first, once: a card opens with its
 * issuer's digit, in a group of four (4-4-4-4, 4-6-5) or a group of its own.
 */
function mayOpenCard(candidate: string, parsed: DigitGroups, from: number): boolean {
  const group = parsed.groups[from];
  if (group === undefined) return false;
  const length = group.end - group.start;
  return (length === 4 || length >= 13) && issuerOpening.test(candidate.slice(group.start, group.start + 4));
}

function findCards(text: string): Span[] {
  const spans: Span[] = [];
  run.lastIndex = 0;
  for (let match = run.exec(text); match !== null; match = run.exec(text)) {
    if (ibanHead.test(text.slice(Math.max(0, match.index - 24), match.index))) continue;
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
