// Phone numbers in three written forms: international (+CC ... or 00CC ...),
// North American (NANP, 3-3-4) and European national (trunk prefix 0). Dates,
// times, order numbers and ISBNs fail the digit-count, grouping or
// numbering-plan checks. An extension ("x123", " ext. 12") after an
// international or North American number is part of it.
import type { DigitGroups } from '../digit-groups.ts';
import { digitCount, digitGroups, longestValidPrefix } from '../digit-groups.ts';
import type { Finder, Span } from '../finder.ts';
import { scan } from '../finder.ts';

const extension = String.raw`(?: ?(?:[xX]|[eE][xX][tT]\.?) ?\d{1,6})`;
const extensionAtEnd = new RegExp(`${extension}$`);
const international = new RegExp(
  String.raw`(?<![\w+])\+\d[\d ().-]{5,22}\d(${extension}?)(?!\w|[.-]\d)`,
  'g',
);
// National forms never continue a longer run of digit groups (an IBAN's tail).
// Neither does the international 00 prefix, whose country code stands alone
// ("0049 30 …"): a bare run of digits starting 00 is mostly an account or order number.
const internationalZeros = new RegExp(
  String.raw`(?<![\w.+#/-]|\d[ -])00[1-9]\d{0,2}[ .-]\d[\d ().-]{4,21}\d(${extension}?)(?!\w|[.-]\d)`,
  'g',
);
const northAmerican = new RegExp(
  String.raw`(?<![\w.+#/-]|\d[ -])(?:1[ .-])?(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}${extension}?(?![\w-]|\.\d)`,
  'g',
);
/** ITU-T E.164 country codes in use, by their leading digits. */
const countryCode =
  /^(?:1|7|2[07]|3[0-469]|4[013-9]|5[1-8]|6[0-6]|8[1246]|9[0-58]|(?:2[1-689]|3[578]|42|5[09]|6[7-9]|8[5789]|9[679])\d)$/;
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

/**
 * The span of a number written `+CC …` at `start`, its extension included
 * when the number runs up to it; `candidate` is the number without the extension.
 */
function internationalSpan(candidate: string, start: number, extension: string): Span | null {
  const parsed = digitGroups(candidate);
  const last = longestValidPrefix(parsed, 1, (i) => {
    const end = parsed.groups[i]?.end ?? 0;
    return internationalValid(candidate.slice(0, end), parsed, i);
  });
  const group = parsed.groups[last];
  if (group === undefined) return null;
  const end = group.end === candidate.length ? group.end + extension.length : group.end;
  return { start, end: start + end };
}

function acceptInternational(match: RegExpExecArray): Span | null {
  const extension = match[1] ?? '';
  return internationalSpan(match[0].slice(0, match[0].length - extension.length), match.index, extension);
}

/** "0049 30 …" is "+49 30 …" dialled from Europe: one character longer. */
function acceptInternationalZeros(match: RegExpExecArray): Span | null {
  const [code = ''] = match[0].slice(2).split(/[ .-]/, 1);
  if (!countryCode.test(code)) return null;
  const extension = match[1] ?? '';
  const plus = `+${match[0].slice(2, match[0].length - extension.length)}`;
  const span = internationalSpan(plus, match.index + 1, extension);
  return span === null ? null : { start: match.index, end: span.end };
}

/** NANP area codes and exchanges never start with 0 or 1. */
function acceptNorthAmerican(match: RegExpExecArray): Span | null {
  const digits = match[0].replace(extensionAtEnd, '').replace(/\D/g, '');
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
    ...scan(internationalZeros, text, acceptInternationalZeros),
    ...scan(northAmerican, text, acceptNorthAmerican),
    ...scan(europeanNational, text, acceptEuropean),
  ];
  return spans.sort((a, b) => a.start - b.start);
}

/**
 * Toward E.164, so that each spelling of a number hashes alike: "+44 (0)20 …"
 * loses the trunk 0 a caller from abroad skips, "0049 …" is "+49 …", and an
 * 11-digit number starting 1 or 10 digits opening with a NANP area code
 * (2-9) are "+1 …". A national number starting 0 is kept as written
 * (digits only): without knowing its country it cannot be folded. An
 * extension is kept apart, as ";ext=123".
 */
function normalizePhone(value: string): string {
  const extension = extensionAtEnd.exec(value)?.[0] ?? '';
  const number = value.slice(0, value.length - extension.length).trim();
  const ext = extension === '' ? '' : `;ext=${extension.replace(/\D/g, '')}`;
  const digits = number.replace(/\(0\)/, '').replace(/\D/g, '');
  if (number.startsWith('+')) return `+${digits}${ext}`;
  if (number.startsWith('00')) return `+${digits.slice(2)}${ext}`;
  if (digits.length === 11 && digits.startsWith('1')) return `+${digits}${ext}`;
  if (digits.length === 10 && /^[2-9]/.test(digits)) return `+1${digits}${ext}`;
  return `${number.replace(/\D/g, '')}${ext}`;
}

export const phone: Finder = {
  id: 'phone',
  label: 'PHONE',
  mayMatch: (_text, features) => features.numberRun,
  find: findPhones,
  normalize: normalizePhone,
};
