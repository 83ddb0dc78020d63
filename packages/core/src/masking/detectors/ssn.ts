// US Social Security numbers. The written forms 123-45-6789 and 123 45 6789 are
// found anywhere; a bare nine-digit run only right after an "SSN" style label
// ("SSN: ", "SSN is "), since bare runs are mostly order, routing and ZIP+4 numbers.
// Up to three spaces count as one, as tokenizers read any run of white space as
// one. After '#', '.', '_', '/' or '-' a number is an order, ticket or part
// number, unless an SSN label comes right before that punctuation
// ("SSN#123-45-6789", "SS #…", "SSN-123-45-6789", "ssn_123456789"), as the
// card detector reads "card-4111…".
import type { Finder, Span } from '../finder.ts';
import { scan } from '../finder.ts';
import { ssnValid } from '../validators.ts';

const labelBefore = String.raw`(?<=(?<![A-Za-z])(?:ssn? ?#|ssn ?[._/-]))`;
const grouped = new RegExp(
  String.raw`(?:(?<![\w.#/-])|${labelBefore})(\d{3})(-| {1,3})(\d{2})(-| {1,3})(\d{4})(?![\w-]|\.\d)`,
  'gi',
);
const bare = new RegExp(String.raw`(?:(?<![\w./-])|${labelBefore})(\d{3})(\d{2})(\d{4})(?![\w-]|\.\d)`, 'gi');
const label =
  /(?:(?<![A-Za-z])ssn|\bss#|social[ -]security(?:[ -]n(?:o|umber))?)(?:\W{1,4}(?:is|was))?[\W_]{0,4}$/i;

function acceptGrouped(match: RegExpExecArray): Span | null {
  const [value, area = '', first = '', group = '', second = '', serial = ''] = match;
  // Both breaks dashes or both spaces: "123-45 6789" is no written form of an SSN.
  if (first.charAt(0) !== second.charAt(0)) return null;
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
