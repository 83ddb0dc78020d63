import type { Finder, Span } from '../finder.ts';
import { scanAround } from '../finder.ts';

// Local part up to 64 characters (an apostrophe only inside it, as in o'brien),
// then a domain whose last label is 2-24 letters or a punycode label. Letters,
// digits and marks of any script count, so jöhn@müller.de and иван@пример.рф
// are found whole. Scripts written without spaces (Han, kana, Thai…) are read
// apart: an address run into Chinese text ("请联系support@example.com") is
// found without its neighbours, and a local part in such a script
// ("用户@例子.广告") takes the whole run of its letters before the '@', up to
// 64, as nothing tells where in the run the address starts. A Latin top-level
// label may be followed by such letters too. The domain run is bounded, so
// backtracking to the last dot stays linear. The regexes are sticky: they are
// tried only where a local part ends at an '@'. Leading quotes, and the dots
// and dashes before a run of such letters, are skipped, not kept.
const letter = String.raw`\p{L}\p{N}\p{M}`;
// By script extension, so the kana length mark ー counts as kana; from Thai
// (U+0E00) on, as below it the extensions hold only marks and signs shared
// with Latin.
const unspaced = String.raw`[\p{scx=Han}\p{scx=Hiragana}\p{scx=Katakana}\p{scx=Thai}\p{scx=Lao}\p{scx=Khmer}\p{scx=Myanmar}]&&[\u0e00-\u{10ffff}]`;
const localChars = `[[${letter}]--[${unspaced}]]._%+\\-`;
const unspacedLetter = `[${letter}]&&[${unspaced}]`;
const unspacedLocalChars = `[${unspacedLetter}]\\p{N}._%+\\-`;
const topLabel = String.raw`[A-Za-z]{2,24}(?![A-Za-z0-9\-])|xn--[A-Za-z0-9\-]{1,59}(?![A-Za-z0-9\-])|[\p{L}--[A-Za-z]]{2,24}(?![\p{L}\p{N}\p{M}\-])`;
const domain = `@[${letter}.\\-]{0,252}\\.(?:${topLabel})`;
const emailRegex = new RegExp(`('*)(?<![${localChars}])[${localChars}][${localChars}']{0,63}${domain}`, 'yv');
const localChar = new RegExp(`[${localChars}']`, 'v');
const unspacedEmailRegex = new RegExp(
  `([._%+\\-]*)(?=[^@]*[${unspacedLetter}])[${unspacedLocalChars}]{1,64}${domain}`,
  'yv',
);
const unspacedLocalChar = new RegExp(`[${unspacedLocalChars}]`, 'v');
/** Most texts hold no letter of those scripts, and take one scan. */
const unspacedScripts = /[\u0e00-\uffff]/;
// "単価＠１００円．合計" is a unit price: a label of digits and such letters is an amount, not a host.
const amountLabel = new RegExp(`^(?=.*\\p{N})(?=.*[${unspacedLetter}])`, 'v');

function accept(match: RegExpExecArray): Span | null {
  const [value, skipped = ''] = match;
  const lead = skipped.length;
  const at = value.indexOf('@');
  const local = value.slice(lead, at);
  const domain = value.slice(at + 1);
  if (local.startsWith('.') || local.endsWith('.') || local.includes('..')) return null;
  const labels = domain.split('.');
  if (labels.some((label) => label === '' || label.startsWith('-') || label.endsWith('-'))) return null;
  return { start: match.index + lead, end: match.index + value.length };
}

function acceptUnspaced(match: RegExpExecArray): Span | null {
  const domain = match[0].slice(match[0].indexOf('@') + 1);
  return domain.split('.').some((label) => amountLabel.test(label)) ? null : accept(match);
}

export const email: Finder = {
  id: 'email',
  label: 'EMAIL',
  mayMatch: (_text, features) => features.at,
  find: (text) => {
    const spans = scanAround(text, '@', localChar, 64, emailRegex, accept);
    if (!unspacedScripts.test(text)) return spans;
    return [
      ...spans,
      ...scanAround(text, '@', unspacedLocalChar, 64, unspacedEmailRegex, acceptUnspaced),
    ].sort((a, b) => a.start - b.start);
  },
  normalize: (value) => value.toLowerCase(),
};
