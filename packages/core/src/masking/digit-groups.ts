// Splits a number written in groups ("4111 1111 1111 1111", "+44 (0)20 7946 0958")
// into its digit groups and the separators between them.

export interface DigitGroups {
  /** Start and end offsets of each run of digits, relative to the candidate. */
  groups: { start: number; end: number }[];
  /** separators[i] is the text between groups[i] and groups[i + 1]. */
  separators: string[];
}

export function digitGroups(candidate: string): DigitGroups {
  const groups: { start: number; end: number }[] = [];
  const separators: string[] = [];
  for (const match of candidate.matchAll(/\d+/g)) {
    const previous = groups.at(-1);
    if (previous !== undefined) separators.push(candidate.slice(previous.end, match.index));
    groups.push({ start: match.index, end: match.index + match[0].length });
  }
  return { groups, separators };
}

/** Total digits in groups[from..to] inclusive. */
export function digitCount(parsed: DigitGroups, from: number, to: number): number {
  let count = 0;
  for (let i = from; i <= to; i++) {
    const group = parsed.groups[i];
    if (group !== undefined) count += group.end - group.start;
  }
  return count;
}

/**
 * The longest prefix of groups (at least `minGroups`) that `valid` accepts, as the
 * index of its last group; -1 if none. Lets "020 7946 0958 12 items" shed the 12.
 */
export function longestValidPrefix(
  parsed: DigitGroups,
  minGroups: number,
  valid: (lastGroup: number) => boolean,
): number {
  for (let last = parsed.groups.length - 1; last >= minGroups - 1; last--) {
    if (valid(last)) return last;
  }
  return -1;
}
