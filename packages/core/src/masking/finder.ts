// The shape every detector and user pattern takes inside the engine.

/** A half-open range [start, end) of UTF-16 code units in a text. */
export interface Span {
  start: number;
  end: number;
}

/** Facts about a text gathered once, so detectors can skip it cheaply. */
export interface TextFeatures {
  /** Eight characters of digits and phone/card separators in a row, digits at both ends. */
  numberRun: boolean;
  dots: number;
  colons: number;
  at: boolean;
  doubleColon: boolean;
}

export interface Finder {
  /** Name reported in mask actions: a detector name, or `pattern:<name>`. */
  readonly id: string;
  /** Placeholder label, e.g. `EMAIL` in `[EMAIL]`. */
  readonly label: string;
  /** Cheap test: false means find() would return nothing for this text. */
  readonly mayMatch: (text: string, features: TextFeatures) => boolean;
  /** Matches in order of start; they may overlap, the engine resolves that. */
  readonly find: (text: string) => Span[];
  /** The form hashed by the hash operator, so equal values in other spellings match. */
  readonly normalize: (value: string) => string;
}

// Every phone number, SSN and card number holds such a run; prose numbers rarely do.
const numberRun = /\d[\d ().-]{6}\d/;

function countChar(text: string, ch: string): number {
  let count = 0;
  for (let i = text.indexOf(ch); i >= 0; i = text.indexOf(ch, i + 1)) count++;
  return count;
}

// Native string and regex scans: several times faster than a charCodeAt loop.
export function textFeatures(text: string): TextFeatures {
  return {
    numberRun: numberRun.test(text),
    dots: countChar(text, '.'),
    colons: countChar(text, ':'),
    at: text.includes('@'),
    doubleColon: text.includes('::'),
  };
}

/**
 * Finds candidates around each occurrence of a rare anchor character ('@', ':')
 * instead of trying a regex at every position. The candidate starts up to
 * `maxBack` characters before the anchor, over characters `back` accepts; the
 * sticky regex must match from there.
 */
export function scanAround(
  text: string,
  anchor: string,
  back: RegExp,
  maxBack: number,
  sticky: RegExp,
  accept: (match: RegExpExecArray) => Span | null,
): Span[] {
  const spans: Span[] = [];
  let from = 0;
  for (let at = text.indexOf(anchor); at >= 0; at = text.indexOf(anchor, Math.max(at + 1, from))) {
    let start = at;
    while (start > from && at - start < maxBack && back.test(text.charAt(start - 1))) start--;
    sticky.lastIndex = start;
    const match = sticky.exec(text);
    const span = match === null ? null : accept(match);
    if (span !== null && span.end > span.start) {
      spans.push(span);
      from = span.end;
    }
  }
  return spans;
}

/**
 * Runs a global regex over text and keeps the spans `accept` returns. After a
 * rejected candidate the search resumes one character later, so a valid match
 * inside a longer invalid candidate is still found. Each start inside it costs
 * its length again: a regex whose candidates `accept` may reject must bound how
 * far they reach, or near-misses make the scan quadratic.
 */
export function scan(regex: RegExp, text: string, accept: (match: RegExpExecArray) => Span | null): Span[] {
  const spans: Span[] = [];
  regex.lastIndex = 0;
  for (let match = regex.exec(text); match !== null; match = regex.exec(text)) {
    const span = accept(match);
    if (span !== null && span.end > span.start) {
      spans.push(span);
      regex.lastIndex = span.end;
    } else {
      regex.lastIndex = match.index + 1;
    }
  }
  return spans;
}

export const identity = (value: string): string => value;

/** Drops spaces, dashes, dots and brackets, upper-cased: `4111-1111…` and `4111 1111…` hash alike. */
export const withoutSeparators = (value: string): string => value.replace(/[\s().-]/g, '').toUpperCase();
