// Text that others wrote (bucket keys, manifest fields, callers, approvers)
// printed to a terminal.

/**
 * What a terminal must not be handed as it is: C0 and C1 controls (CSI is
 * U+009B), format controls (the bidirectional ones reorder what follows them on
 * the screen, zero-width ones hide text), line and paragraph separators, and
 * lone surrogates.
 */
const unprintable = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u;
// JSON escapes C0 controls and lone surrogates only; the rest are escaped here.
const notEscapedByJson = /[\u007f-\u009f\p{Cf}\p{Zl}\p{Zp}]/gu;

/**
 * The text as is, or, if it holds a control character, quoted with every one
 * escaped: an escape sequence from the evidence must not clear or retitle the
 * terminal of whoever reads it, or forge a line of output.
 */
export function printable(text: string): string {
  return unprintable.test(text) ? quoted(text) : text;
}

/** No space, comma, bracket or quote: nothing to mimic a column, clause or list with. */
const plainCharacters = /^[A-Za-z0-9._:/@-]+$/;

/**
 * Whether text someone else chose (a model name, a subject) may be shown bare
 * among what Veil writes: without any of the characters that separate
 * columns and clauses, it cannot pass for one of Veil's own.
 */
export function isPlain(text: string): boolean {
  return plainCharacters.test(text);
}

/** The text in double quotes, every control character escaped. */
export function quoted(text: string): string {
  return JSON.stringify(text).replace(notEscapedByJson, escapeUnits);
}

/** `\uXXXX` for each UTF-16 unit: a format control past U+FFFF is a surrogate pair. */
function escapeUnits(character: string): string {
  let escaped = '';
  for (let i = 0; i < character.length; i++) {
    escaped += `\\u${character.charCodeAt(i).toString(16).padStart(4, '0')}`;
  }
  return escaped;
}
