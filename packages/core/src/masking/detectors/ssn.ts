// US Social Security numbers. The written forms 123-45-6789 and 123 45 6789 are
// found anywhere; a bare nine-digit run only right after an "SSN" style label
// ("SSN: ", "SSN is "), since bare runs are mostly order, routing and ZIP+4 numbers.
import type { Finder, Span } from '../finder.ts';
import { scan } from '../finder.ts';
import { ssnValid } from '../validators.ts';

const grouped = /(?<![\w.#/-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\w-]|\.\d)/g;
const bare = /(?<![\w./-])(\d{3})(\d{2})(\d{4})(?![\w-]|\.\d)/g;
const label = /(?:\bssn|\bss#|social[ -]security(?:[ -]n(?:o|umber))?)(?:\W{1,4}(?:is|was))?\W{0,4}$/i;

function acceptGrouped(match: RegExpExecArray): Span | null {
  const [value, area = '', , group = '', serial = ''] = match;
  return ssnValid(area, group, serial) ? { start: match.index, end: match.index + value.length } : null;
}

function acceptBare(match: RegExpExecArray): Span | null {
  const [value, area = '', group = '', serial = ''] = match;
  if (!ssnValid(area, group, serial)) return null;
  const before = match.input.slice(Math.max(0, match.index - 24), match.index);
  return label.test(before) ? { start: match.index, end: match.index + value.length } : null;
}

export const ssn: Finder = {
  id: 'ssn',
  label: 'SSN',
  mayMatch: (_text, features) => features.numberRun,
  find: (text) =>
    [...scan(grouped, text, acceptGrouped), ...scan(bare, text, acceptBare)].sort(
      (a, b) => a.start - b.start,
    ),
  normalize: (value) => value.replace(/\D/g, ''),
};
