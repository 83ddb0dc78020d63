// IBANs, compact or printed in groups of four, in either case. The country fixes
// the length, so the candidate is cut at exactly that many characters; the mod-97
// check then rejects mistyped or made-up numbers. Groups may be split by up to
// three spaces, as tokenizers read any run of white space as one.
import type { Finder, Span } from '../finder.ts';
import { scan, withoutSeparators } from '../finder.ts';
import { ibanLength } from '../iban-lengths.ts';
import { ibanValid } from '../validators.ts';

const maxBreak = 3;
// Long enough for the longest IBAN, 34 characters, with eight breaks of maxBreak spaces.
const candidateRegex = /(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}[A-Za-z0-9 ]{11,54}/g;
const ibanHead = /[A-Za-z]{2}\d{2}/;

/** The number of spaces in a row from `at`. */
function breakLength(value: string, at: number): number {
  let end = at;
  while (value.charAt(end) === ' ') end++;
  return end - at;
}

function accept(match: RegExpExecArray): Span | null {
  const value = match[0].toUpperCase();
  const length = ibanLength(value.slice(0, 2));
  if (length === undefined) return null;
  let compact = '';
  let end = 0;
  for (; end < value.length && compact.length < length; end++) {
    const ch = value.charAt(end);
    if (ch !== ' ') {
      compact += ch;
      continue;
    }
    // Printed IBANs put spaces only between groups of four.
    const spaces = breakLength(value, end);
    if (compact.length % 4 !== 0 || spaces > maxBreak) return null;
    end += spaces - 1;
  }
  if (compact.length < length || /[A-Za-z0-9]/.test(match.input.charAt(match.index + end))) return null;
  return ibanValid(compact) ? { start: match.index, end: match.index + end } : null;
}

export const iban: Finder = {
  id: 'iban',
  label: 'IBAN',
  mayMatch: (text) => ibanHead.test(text),
  find: (text) => scan(candidateRegex, text, accept),
  normalize: withoutSeparators,
};
