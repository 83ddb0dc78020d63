// The text as the embedding model's tokenizer reads it. BERT-style tokenizers
// split on every Unicode space separator and delete format and control
// characters, so "4111\u00a01111…" and "john\u200b@example.com" reach the model
// as a card number and an e-mail address. The detectors look for plain spaces
// and hyphens, so they also scan this reading, and their spans are mapped back
// to the text as written. Full-width forms ("１２３－４５－６７８９") are read as
// their ASCII letters, digits and signs, as NFKC-normalising tokenizers read them.

// Spelled out as code units rather than as Unicode property classes: every
// text takes the hiddenForm test, and on two-byte strings property classes, or
// one class of all these ranges, scan several times slower. A test checks the
// lists against \p{Zs}, \p{Cf} and \p{Cc}.

/** Space separators but the plain space. */
const spaces = String.raw`\xa0\u1680\u2000-\u200a\u202f\u205f\u3000`;
const dashes = String.raw`\u2010-\u2015\u2212`;
/** Full-width forms of the printable ASCII characters, U+FF01 to U+FF5E: each reads as its ASCII character. */
const fullWidths = String.raw`\uff01-\uff5e`;
const fullWidthOffset = 0xfee0;
/** Format characters, and control characters but tabs and line breaks, which the detectors handle. */
const skippedLatin1 = String.raw`\0-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\xad`;
const skippedBmp = String.raw`\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb`;
const skippedAstral = String.raw`\ud804[\udcbd\udccd]|\ud80d[\udc30-\udc3f]|\ud82f[\udca0-\udca3]|\ud834[\udd73-\udd7a]|\udb40[\udc01\udc20-\udc7f]`;

const hiddenFormsSource = `[${skippedLatin1}${spaces}${dashes}]|[${skippedBmp}${fullWidths}]|${skippedAstral}`;
const hiddenForm = new RegExp(hiddenFormsSource);
const hiddenForms = new RegExp(hiddenFormsSource, 'g');
const spaceForm = new RegExp(`[${spaces}]`);
const dashForm = new RegExp(`[${dashes}]`);
const fullWidthForm = new RegExp(`[${fullWidths}]`);

/**
 * A text as read. Where characters were skipped: from offset `at[i]` of the
 * reading on, written offsets run `shift[i]` ahead of read ones.
 */
export interface Reading {
  text: string;
  at: number[];
  shift: number[];
}

/** One fast test, so that texts without hidden forms take no other step. */
export function hasHiddenForms(text: string): boolean {
  return hiddenForm.test(text);
}

/** Spaces read as ' ', dashes as '-', full-width forms as ASCII; format and control characters are skipped. */
function asRead(form: string): string {
  if (spaceForm.test(form)) return ' ';
  if (dashForm.test(form)) return '-';
  return fullWidthForm.test(form) ? String.fromCharCode(form.charCodeAt(0) - fullWidthOffset) : '';
}

/** A value as read: what the hash operator hashes, so every spelling gives one token. */
export function readValue(value: string): string {
  return hasHiddenForms(value) ? value.replace(hiddenForms, asRead) : value;
}

// One replace with a callback: separate passes for spaces, dashes and skipped
// characters cost several times more on texts of ordinary length.
export function readingOf(text: string): Reading {
  const at: number[] = [];
  const shift: number[] = [];
  let skipped = 0;
  const read = text.replace(hiddenForms, (form: string, offset: number) => {
    const replacement = asRead(form);
    // Spaces, dashes and full-width forms are read one for one: only skipped characters shift offsets.
    if (replacement === '') {
      at.push(offset - skipped);
      skipped += form.length;
      shift.push(skipped);
    }
    return replacement;
  });
  return { text: read, at, shift };
}

/** The written offset of the character at `offset` in the reading. */
function writtenOffset(reading: Reading, offset: number): number {
  let low = 0;
  let high = reading.at.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if ((reading.at[middle] ?? 0) <= offset) low = middle + 1;
    else high = middle;
  }
  return offset + (low === 0 ? 0 : (reading.shift[low - 1] ?? 0));
}

/**
 * The written span of a read span [start, end): from its first character to
 * its last, so characters skipped inside the value are masked with it.
 */
export function writtenSpan(reading: Reading, start: number, end: number): { start: number; end: number } {
  return { start: writtenOffset(reading, start), end: writtenOffset(reading, end - 1) + 1 };
}
