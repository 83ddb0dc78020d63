// The text as the embedding model's tokenizer reads it. BERT-style tokenizers
// read tabs, line breaks and every Unicode space separator as a space, and
// delete control, format and private-use characters, U+FFFD and lone
// surrogates, so "4111\u00a01111…", "4111\n1111…" and "john\u200b@example.com"
// reach the model as a card number and an e-mail address. The detectors look
// for plain spaces and hyphens, so they also scan this reading, and their spans
// are mapped back to the text as written. Characters that NFKC folds to one
// ASCII character (full-width "１２３－４５－６７８９", mathematical "𝟏𝟐𝟑",
// superscript and circled digits, small "﹫") are read as that character, as
// NFKC-normalising tokenizers read them; those it folds to a dash or space
// (small "﹘" to "—") are read as that one is.
// A combining mark is part of the letter before it, but after a digit, a
// space or punctuation it joins nothing: tokenizers that strip accents drop
// it and the others make it a token of its own, so "4111\u0301 1111…" reaches
// the model as a card number and is read without the mark.

// The ranges are spelled out as code points and looked up in a table per code
// unit, not matched with Unicode property classes: every text takes the
// hidden-form test, and on two-byte strings property classes, or one class of
// all these ranges, scan several times slower. A test checks them against
// \p{Zs}, \p{Cc}, \p{Cf}, \p{Co}, \p{Cs} and NFKC over every code point.

type Range = readonly [first: number, last: number];

/** Read as a plain space: tabs, line breaks and every space separator but the plain space. */
const spaces: readonly Range[] = [
  [0x09, 0x0a],
  [0x0d, 0x0d],
  [0xa0, 0xa0],
  [0x1680, 0x1680],
  [0x2000, 0x200a],
  [0x2028, 0x2029],
  [0x202f, 0x202f],
  [0x205f, 0x205f],
  [0x3000, 0x3000],
];
const dashes: readonly Range[] = [
  [0x2010, 0x2015],
  [0x2212, 0x2212],
];

/** Noncharacters are unassigned in every Unicode version, so every tokenizer deletes them. */
const astralNoncharacters: readonly Range[] = Array.from({ length: 14 }, (_, i): Range => {
  const plane = (i + 1) * 0x10000;
  return [plane + 0xfffe, plane + 0xffff];
});

/**
 * Deleted in the reading: control characters but tabs and line breaks (so \v,
 * \f and U+0085 are), format and private-use characters, U+FFFD and the
 * noncharacters. Planes 15 and 16 are private use whole.
 */
const skipped: readonly Range[] = [
  [0x00, 0x08],
  [0x0b, 0x0c],
  [0x0e, 0x1f],
  [0x7f, 0x9f],
  [0xad, 0xad],
  [0x600, 0x605],
  [0x61c, 0x61c],
  [0x6dd, 0x6dd],
  [0x70f, 0x70f],
  [0x890, 0x891],
  [0x8e2, 0x8e2],
  [0x180e, 0x180e],
  [0x200b, 0x200f],
  [0x202a, 0x202e],
  [0x2060, 0x2064],
  [0x2066, 0x206f],
  [0xe000, 0xf8ff],
  [0xfdd0, 0xfdef],
  [0xfeff, 0xfeff],
  [0xfff9, 0xfffb],
  [0xfffd, 0xffff],
  [0x110bd, 0x110bd],
  [0x110cd, 0x110cd],
  [0x13430, 0x1343f],
  [0x1bca0, 0x1bca3],
  [0x1d173, 0x1d17a],
  [0xe0001, 0xe0001],
  [0xe0020, 0xe007f],
  [0xf0000, 0x10ffff],
  ...astralNoncharacters,
];

/**
 * The blocks holding characters that NFKC folds to one ASCII character:
 * superscripts, modifier letters, letterlike and circled forms, small and
 * full-width forms, mathematical and segmented letters and digits. Scanned
 * once at load; a test checks that no other code point folds so.
 */
const foldBlocks: readonly Range[] = [
  [0x80, 0x37f],
  [0x1d00, 0x1fff],
  [0x2000, 0x24ff],
  [0x2c60, 0x2c7f],
  [0xa700, 0xa7ff],
  [0xfb00, 0xffef],
  [0x10780, 0x107bf],
  [0x1cc00, 0x1ccff],
  [0x1d400, 0x1d7ff],
  [0x1f100, 0x1f1ff],
  [0x1fb00, 0x1fbff],
];

function eachCode(ranges: readonly Range[], visit: (ch: string) => void): void {
  for (const [first, last] of ranges) {
    for (let code = first; code <= last; code++) visit(String.fromCodePoint(code));
  }
}

/**
 * What each character read otherwise than as written reads as; characters of
 * `skipped` are read as nothing. A line break written CR LF is one space, as
 * it is one break between words.
 */
function readFormsTable(): Map<string, string> {
  const forms = new Map<string, string>([['\r\n', ' ']]);
  eachCode(spaces, (ch) => forms.set(ch, ' '));
  eachCode(dashes, (ch) => forms.set(ch, '-'));
  // NFKC folds some forms to a dash or space above ("﹘" to "—", "⁻" to "−"),
  // which tokenizers then read as that one is read: as '-'.
  eachCode(foldBlocks, (ch) => {
    const folded = ch.normalize('NFKC');
    const read = folded.length === 1 && folded < '\x80' ? folded : forms.get(folded);
    if (read !== undefined) forms.set(ch, read);
  });
  return forms;
}

const readForms = readFormsTable();

/** Sorted, with touching and overlapping ranges joined. */
function joined(ranges: readonly Range[]): Range[] {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  const out: [number, number][] = [];
  for (const [first, last] of sorted) {
    const previous = out.at(-1);
    if (previous !== undefined && first <= previous[1] + 1) previous[1] = Math.max(previous[1], last);
    else out.push([first, last]);
  }
  return out;
}

const unit = (code: number): string => `\\u${code.toString(16).padStart(4, '0')}`;
const unitClass = (ranges: readonly Range[]): string =>
  `[${ranges.map(([first, last]) => (first === last ? unit(first) : `${unit(first)}-${unit(last)}`)).join('')}]`;

/** Ranges clipped to [low, high]. */
const within = (ranges: readonly Range[], low: number, high: number): Range[] =>
  ranges
    .filter(([first, last]) => last >= low && first <= high)
    .map(([first, last]): Range => [Math.max(first, low), Math.min(last, high)]);

/**
 * Astral ranges as surrogate pairs: for each run of high surrogates whose low
 * surrogates are alike, one class of each.
 */
function astralAlternatives(ranges: readonly Range[]): string[] {
  const lows = new Map<number, Range[]>();
  for (const [first, last] of ranges) {
    for (let code = first; code <= last; code = (code | 0x3ff) + 1) {
      const high = 0xd800 + ((code - 0x10000) >> 10);
      const low: Range = [0xdc00 + (code & 0x3ff), 0xdc00 + (Math.min(last, code | 0x3ff) & 0x3ff)];
      lows.set(high, [...(lows.get(high) ?? []), low]);
    }
  }
  const runs: { highs: [number, number]; lows: string }[] = [];
  for (const [high, lowRanges] of [...lows].sort((a, b) => a[0] - b[0])) {
    const lowClass = unitClass(lowRanges);
    const run = runs.at(-1);
    if (run !== undefined && run.highs[1] === high - 1 && run.lows === lowClass) run.highs[1] = high;
    else runs.push({ highs: [high, high], lows: lowClass });
  }
  return runs.map((run) => `${unitClass([run.highs])}${run.lows}`);
}

/** Every code point read otherwise than as written. */
function hiddenCodes(): Range[] {
  const read = [...readForms.keys()].flatMap((form): Range[] => {
    const code = form.codePointAt(0) ?? 0;
    return String.fromCodePoint(code) === form ? [[code, code]] : [];
  });
  return joined([...skipped, ...read]);
}

const codes = hiddenCodes();
// The test for hidden forms: one-byte strings, most texts, take one regex of
// Latin-1 alone, which V8 skips through. On two-byte strings a regex of all
// these classes scans several times slower than a table lookup per code unit.
const latin1Form = new RegExp(unitClass(within(codes, 0, 0xff)));
const wideForm = /[^\0-\xff]/;
const astralForm = new RegExp(astralAlternatives(within(codes, 0x10000, 0x10ffff)).join('|'), 'y');
const visible = 0;
/** Read as written, but a mark after it joins nothing: ASCII but letters. */
const unjoined = 1;
const hidden = 2;
const surrogate = 3;
const mark = 4;

/** What each code unit is: visible, unjoined, hidden, a mark, or a surrogate, whose pair decides. */
function codeUnitKinds(): Uint8Array {
  const kinds = new Uint8Array(0x10000).fill(visible);
  for (let code = 0; code < 0x80; code++) {
    if (!/[A-Za-z]/.test(String.fromCharCode(code))) kinds[code] = unjoined;
  }
  for (const [first, last] of within(codes, 0, 0xffff)) kinds.fill(hidden, first, last + 1);
  return kinds.fill(surrogate, 0xd800, 0xe000);
}

const kinds = codeUnitKinds();

const markClass = /[\p{Mn}\p{Me}]/u;
const astralMark = /[\p{Mn}\p{Me}]/uy;
/** Emoji and the other symbols from U+1F000 up to the variation selectors hold no marks: they skip the property test. */
const mayBeAstralMark = (code: number): boolean => code < 0x1f000 || code >= 0xe0100;
// Marks lie in hundreds of small ranges: found by their property once, at load.
for (let code = 0x300; code <= 0xffff; code++) {
  if (kinds[code] === visible && markClass.test(String.fromCharCode(code))) kinds[code] = mark;
}

/**
 * Whether a mark after `before` ('' at the start) joins nothing and is left
 * out: after ASCII other than a letter, but for U+0338, which makes `<`, `=`
 * and `>` the ≮, ≠ and ≯ that NFC composes.
 */
function joinsNothing(before: string, combining: string): boolean {
  if (before === '') return true;
  if (before >= '\x80' || /[A-Za-z]/.test(before)) return false;
  return !(combining === '\u0338' && /[<=>]/.test(before));
}

/**
 * Code units of the form at i, a surrogate, hidden code unit or mark; 0 for
 * a pair read as written. Whether a mark is left out depends on what comes
 * before it, which the caller decides.
 */
function formLength(text: string, i: number): number {
  const kind = kinds[text.charCodeAt(i)];
  if (kind === hidden) return text.startsWith('\r\n', i) ? 2 : 1;
  if (kind === mark) return 1;
  // A surrogate that is not half of a pair: tokenizers drop it.
  if ((text.codePointAt(i) ?? 0) <= 0xffff) return 1;
  astralForm.lastIndex = i;
  if (astralForm.test(text)) return 2;
  if (!mayBeAstralMark(text.codePointAt(i) ?? 0)) return 0;
  astralMark.lastIndex = i;
  return astralMark.test(text) ? 2 : 0;
}

const isMark = (form: string): boolean =>
  kinds[form.charCodeAt(0)] === mark || (form.length === 2 && markClass.test(form));

/**
 * Calls `visit` with each hidden form, and each mark that may be left out,
 * and its offset, in order, until it returns false.
 */
function eachForm(text: string, visit: (form: string, offset: number) => boolean): void {
  // Marks on a letter, or on a character of another script read as written,
  // are kept: the common case of scripts that write vowels and accents so.
  let onLetter = false;
  for (let i = 0; i < text.length; i++) {
    const kind = kinds[text.charCodeAt(i)] ?? visible;
    if (kind === visible) onLetter = true;
    else if (kind === unjoined) onLetter = false;
    if (kind < hidden || (kind === mark && onLetter)) continue;
    onLetter = false;
    const length = formLength(text, i);
    if (length > 0 && !visit(text.slice(i, i + length), i)) return;
    // Past the form, or past the low half of a pair read as written.
    if (length !== 1) i++;
  }
}

/**
 * A text as read. Where characters were skipped, or two code units read as
 * one: from offset `at[i]` of the reading on, written offsets run `shift[i]`
 * ahead of read ones.
 */
export interface Reading {
  text: string;
  /** The text as written, which the reading's spans are mapped back to. */
  written: string;
  at: number[];
  shift: number[];
  /** Whether a character left out sat between two digits. */
  joinsDigits: boolean;
}

/** One fast test, so that texts without hidden forms take no other step. */
export function hasHiddenForms(text: string): boolean {
  if (!wideForm.test(text)) return latin1Form.test(text);
  let found = false;
  // A mark after a hidden form is never the first found, so what is written before it decides.
  eachForm(text, (form, offset) => {
    found = !isMark(form) || joinsNothing(text.charAt(offset - 1), form);
    return !found;
  });
  return found;
}

const asRead = (form: string): string => readForms.get(form) ?? '';

const isDigit = (ch: string): boolean => ch >= '0' && ch <= '9';

/** The character at i, folded as read; '' at the end. */
function charAsRead(text: string, i: number): string {
  const code = text.codePointAt(i);
  if (code === undefined) return '';
  const ch = String.fromCodePoint(code);
  return readForms.get(ch) ?? ch;
}

/**
 * With `breaks`, a character left out between two digits is read as a space:
 * "4111\u200b1111 1111 1111" is read by tokenizers as "41111111 1111 1111",
 * which holds the card's digits but not its grouping, and by people as the
 * card grouped in fours.
 */
export function readingOf(text: string, breaks = false): Reading {
  const at: number[] = [];
  const shift: number[] = [];
  let read = '';
  // The last code unit of `read`, kept apart: reading it back from the string
  // being built would flatten it at every form, quadratic in a run of forms.
  let lastRead = '';
  let from = 0;
  let joinsDigits = false;
  eachForm(text, (form, offset) => {
    const before = offset > from ? text.charAt(offset - 1) : lastRead;
    let replacement = !isMark(form) ? asRead(form) : joinsNothing(before, form) ? '' : form;
    if (replacement === '' && isDigit(before) && isDigit(charAsRead(text, offset + form.length))) {
      joinsDigits = true;
      if (breaks) replacement = ' ';
    }
    read += text.slice(from, offset) + replacement;
    lastRead = replacement === '' ? before : replacement.charAt(replacement.length - 1);
    from = offset + form.length;
    // Most forms are read one for one: only skipped characters, astral
    // characters folded to ASCII and CR LF shift offsets.
    if (replacement.length < form.length) {
      at.push(read.length);
      shift.push(from - read.length);
    }
    return true;
  });
  return { text: read + text.slice(from), written: text, at, shift, joinsDigits };
}

/** A value as read: what the hash operator hashes, so every spelling gives one token. */
export function readValue(value: string): string {
  return hasHiddenForms(value) ? readingOf(value).text : value;
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
 * its last, so characters skipped inside the value are masked with it. The
 * last may be written as a surrogate pair read as one code unit.
 */
export function writtenSpan(reading: Reading, start: number, end: number): { start: number; end: number } {
  const last = writtenOffset(reading, end - 1);
  const width = (reading.written.codePointAt(last) ?? 0) > 0xffff ? 2 : 1;
  return { start: writtenOffset(reading, start), end: last + width };
}
