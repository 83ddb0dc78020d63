import type { Finder, Span } from '../finder.ts';
import { scanAround } from '../finder.ts';

// Local part up to 64 characters (an apostrophe only inside it, as in o'brien),
// then a domain whose last label is 2-24 letters. The domain run is bounded, so
// backtracking to the last dot stays linear. The regex is sticky: it is tried
// only where a local part ends at an '@'. Leading quotes are skipped, not kept.
const emailRegex =
  /'*(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-][A-Za-z0-9._%+'-]{0,63}@[A-Za-z0-9.-]{0,252}\.[A-Za-z]{2,24}(?![A-Za-z0-9-])/y;
const localChar = /[A-Za-z0-9._%+'-]/;

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
