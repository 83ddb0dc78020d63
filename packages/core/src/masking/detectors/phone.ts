// Phone numbers in three written forms: international (+CC ...), North American
// (NANP, 3-3-4) and European national (trunk prefix 0). Dates, times, order
// numbers and ISBNs fail the digit-count, grouping or numbering-plan checks.
import type { DigitGroups } from '../digit-groups.ts';
import { digitCount, digitGroups, longestValidPrefix } from '../digit-groups.ts';
import type { Finder, Span } from '../finder.ts';
import { scan } from '../finder.ts';

const international = /(?<![\w+])\+\d[\d ().-]{5,22}\d(?!\w|[.-]\d)/g;
// National forms never continue a longer run of digit groups (an IBAN's tail).
const northAmerican =
  /(?<![\w.+#/-]|\d[ -])(?:1[ .-])?(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}(?![\w-]|\.\d)/g;
const europeanNational =
  /(?<![\w.+#/-]|\d[ -])(?:\(0[1-9]\d{0,3}\) ?|0[1-9]\d{0,3}[ -])\d[\d -]{2,14}\d(?![\w-]|\.\d)/g;

/** E.164 allows at most 15 digits; fewer than 8 is not a reachable number. */
function internationalValid(prefix: string, parsed: DigitGroups, last: number): boolean {
  const digits = digitCount(parsed, 0, last);
  if (digits < 8 || digits > 15) return false;
  // Brackets may only enclose one short group, as in +44 (0)20 or +1 (415).
  if (/[()]/.test(prefix.replace(/\(\d{1,4}\)/g, ''))) return false;
  const separators = parsed.separators.slice(0, last);
  if (separators.some((s) => s.replace(/[()]/g, '').length > 1)) return false;
  // "+3.14159" is a signed decimal, not a phone number.
  return !(separators.length === 1 && separators[0] === '.');
}

function acceptInternational(match: RegExpExecArray): Span | null {
  const parsed = digitGroups(match[0]);
  const last = longestValidPrefix(parsed, 1, (i) => {
    const end = parsed.groups[i]?.end ?? 0;
    return internationalValid(match[0].slice(0, end), parsed, i);
  });
  const group = parsed.groups[last];
  return group === undefined ? null : { start: match.index, end: match.index + group.end };
}

/** NANP area codes and exchanges never start with 0 or 1. */
function acceptNorthAmerican(match: RegExpExecArray): Span | null {
  const digits = match[0].replace(/\D/g, '');
  const local = digits.length === 11 ? digits.slice(1) : digits;
  if (/^[01]/.test(local) || /^[01]/.test(local.slice(3))) return null;
  return { start: match.index, end: match.index + match[0].length };
}

/** 9-12 digits: an area group of 2-5, then groups of 2-8 with one kind of separator. */
function europeanValid(candidate: string, parsed: DigitGroups, last: number): boolean {
  const digits = digitCount(parsed, 0, last);
  if (digits < 9 || digits > 12) return false;
  const lengths = parsed.groups.slice(0, last + 1).map((group) => group.end - group.start);
  if (lengths.some((length, i) => length < 2 || length > (i === 0 ? 5 : 8))) return false;
  // 0xx-xx-xxxx is how SSNs are written, not European phone numbers.
  if (lengths.join('-') === '3-2-4') return false;
  // Numbers written wholly in pairs are the French style, 0X XX XX XX XX.
  if (lengths.every((length) => length === 2) && digits !== 10) return false;
  const [first = '', ...rest] = parsed.separators.slice(0, last);
  const bracketed = candidate.startsWith('(');
  if (bracketed ? !/^\) ?$/.test(first) : !/^[ -]$/.test(first)) return false;
  const kind = bracketed ? (rest[0] ?? ' ') : first;
  return /^[ -]$/.test(kind) && rest.every((s) => s === kind);
}

function acceptEuropean(match: RegExpExecArray): Span | null {
  const parsed = digitGroups(match[0]);
  const last = longestValidPrefix(parsed, 2, (i) => europeanValid(match[0], parsed, i));
  const group = parsed.groups[last];
  return group === undefined ? null : { start: match.index, end: match.index + group.end };
}

function findPhones(text: string): Span[] {
  const spans = [
    ...scan(international, text, acceptInternational),
    ...scan(northAmerican, text, acceptNorthAmerican),
    ...scan(europeanNational, text, acceptEuropean),
  ];
  return spans.sort((a, b) => a.start - b.start);
}

export const phone: Finder = {
  id: 'phone',
  label: 'PHONE',
  mayMatch: (_text, features) => features.numberRun,
  find: findPhones,
  normalize: (value) => value.replace(/[^\d+]/g, ''),
};
