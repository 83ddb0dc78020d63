// Model-name globs, as access and approval rules write them: `*` matches any
// run of characters, everything else is literal. The model name is the
// caller's to choose, so matching must stay linear in its length: the pieces
// between stars are searched for left to right, never backtracked over as a
// `.*` regex does, which took seconds on a long name.

const lineFeed = 0x0a;
const carriageReturn = 0x0d;
const lineSeparator = 0x2028;
const paragraphSeparator = 0x2029;

/**
 * A `*` never runs across a line break: these globs used to be regexes, whose
 * `.*` stops at one, so a name holding one matched no rule and was denied.
 */
function hasLineBreak(name: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const code = name.charCodeAt(i);
    if (code === lineFeed || code === carriageReturn || code === lineSeparator || code === paragraphSeparator)
      return true;
  }
  return false;
}

/**
 * Each middle piece is taken at its first place after the one before: that
 * leaves the most room for the pieces after it, and any later place would
 * leave a longer gap before it, holding whatever line break this one's does.
 */
function piecesMatch(name: string, head: string, middle: readonly string[], tail: string): boolean {
  const end = name.length - tail.length;
  if (end < head.length || !name.startsWith(head) || !name.endsWith(tail)) return false;
  let at = head.length;
  for (const piece of middle) {
    const found = name.indexOf(piece, at);
    if (found < 0 || found + piece.length > end || hasLineBreak(name, at, found)) return false;
    at = found + piece.length;
  }
  return !hasLineBreak(name, at, end);
}

/** A test of names against one glob, compiled once. */
export function globMatcher(glob: string): (name: string) => boolean {
  const [head = '', ...rest] = glob.split('*');
  const tail = rest.pop();
  if (tail === undefined) return (name) => name === glob;
  return (name) => piecesMatch(name, head, rest, tail);
}
