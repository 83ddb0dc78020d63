// Text that others wrote (callers, requesters, approvers) printed to a terminal.

/** The bidirectional controls: they reorder what follows them on the screen (a reason could show another approver's name). */
const bidiControls = '\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069';
const unprintable = new RegExp(`[\\p{Cc}${bidiControls}]`, 'u');
// JSON escapes C0 controls only; DEL and the C1 range (CSI is U+009B) are escaped here too.
const notEscapedByJson = new RegExp(`[\\u007f-\\u009f${bidiControls}]`, 'g');

/**
 * The text as is, or, if it holds a control character, quoted with every one
 * escaped: an escape sequence from a request must not clear or retitle the
 * terminal of whoever reads it.
 */
export function printable(text: string): string {
  return unprintable.test(text) ? quoted(text) : text;
}

/** The text in double quotes, every control character escaped. */
export function quoted(text: string): string {
  return JSON.stringify(text).replace(
    notEscapedByJson,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}
