import type { Finder, Span } from '../finder.ts';
import { scanAround } from '../finder.ts';

// Local part up to 64 characters (an apostrophe only inside it, as in o'brien),
// then a domain whose last label is 2-24 letters or a punycode label. Letters,
// digits and marks of any script count, so jöhn@müller.de and иван@пример.рф
// are found whole; the local part takes no letters of scripts written without
// spaces (Han, kana, Thai…), so an address run into Chinese text
// ("请联系support@example.com") is found without its neighbours. A Latin
// top-level label may be followed by such letters too. The domain run is
// bounded, so backtracking to the last dot stays linear. The regex is sticky:
// it is tried only where a local part ends at an '@'. Leading quotes are
// skipped, not kept.
const letter = String.raw`\p{L}\p{N}\p{M}`;
const unspaced = String.raw`\p{sc=Han}\p{sc=Hiragana}\p{sc=Katakana}\p{sc=Thai}\p{sc=Lao}\p{sc=Khmer}\p{sc=Myanmar}`;
const localChars = `[[${letter}]--[${unspaced}]]._%+\\-`;
const topLabel = String.raw`[A-Za-z]{2,24}(?![A-Za-z0-9\-])|xn--[A-Za-z0-9\-]{1,59}(?![A-Za-z0-9\-])|[\p{L}--[A-Za-z]]{2,24}(?![\p{L}\p{N}\p{M}\-])`;
const emailRegex = new RegExp(
  `'*(?<![${localChars}])[${localChars}][${localChars}']{0,63}@[${letter}.\\-]{0,252}\\.(?:${topLabel})`,
  'yv',
);
const localChar = new RegExp(`[${localChars}']`, 'v');

function accept(match: RegExpExecArray): Span | null {
  const value = match[0];
  const lead = value.length - value.replace(/^'+/, '').length;
  const at = value.indexOf('@');
  const local = value.slice(lead, at);
  const domain = value.slice(at + 1);
  if (local.startsWith('.') || local.endsWith('.') || local.includes('..')) return null;
  const labels = domain.split('.');
  if (labels.some((label) => label === '' || label.startsWith('-') || label.endsWith('-'))) return null;
  return { start: match.index + lead, end: match.index + value.length };
}

export const email: Finder = {
  id: 'email',
  label: 'EMAIL',
  mayMatch: (_text, features) => features.at,
  find: (text) => scanAround(text, '@', localChar, 64, emailRegex, accept),
  normalize: (value) => value.toLowerCase(),
};
