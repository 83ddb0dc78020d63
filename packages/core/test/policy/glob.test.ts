import assert from 'node:assert/strict';
import { test } from 'node:test';
import { globMatcher } from '@veil/core';

/** The regex model globs were once turned into: the meaning the matcher keeps. */
function regexGlob(glob: string): RegExp {
  const escaped = glob.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*');
  return new RegExp(`^${escaped}$`);
}

function assertSameAsRegex(glob: string, name: string): void {
  assert.equal(
    globMatcher(glob)(name),
    regexGlob(glob).test(name),
    `${JSON.stringify(glob)} on ${JSON.stringify(name)}`,
  );
}

/** Every string of up to `length` characters from `alphabet`. */
function strings(alphabet: readonly string[], length: number): string[] {
  const all = [''];
  for (let i = 0; i < all.length && (all[i] ?? '').length < length; i++) {
    for (const ch of alphabet) all.push(`${all[i]}${ch}`);
  }
  return all;
}

test('* matches any run of characters, everything else literally', () => {
  assert.ok(globMatcher('ft-*')('ft-legal.v2'));
  assert.ok(globMatcher('*')(''));
  assert.ok(globMatcher('a*c')('abbbc'));
  assert.ok(globMatcher('a**c')('ac'));
  assert.ok(!globMatcher('a.c')('abc'), 'a dot is a dot');
  assert.ok(!globMatcher('m+')('mm'), 'a plus is a plus');
  assert.ok(!globMatcher('m?')('m'), 'a question mark is a question mark');
  assert.ok(!globMatcher('ft-*')('x-ft-a'), 'anchored at the start');
  assert.ok(!globMatcher('*-small')('e-small-2'), 'anchored at the end');
  assert.ok(!globMatcher('ab*ba')('aba'), 'the head and tail do not share characters');
});

test('matches as the regex did on a table of globs and names', () => {
  const globs = [
    '',
    '*',
    '**',
    'bge-m3',
    'ft-*',
    '*-small',
    '*-*-v2',
    'a*b*c',
    'ab*ba',
    'a.*',
    'm+?',
    '(x|y)*',
    '[ab]*',
    '^$*{2}',
    'back\\slash*',
    'text-*-3-*',
    'a\n*',
  ];
  const names = [
    '',
    'bge-m3',
    'ft-legal-v2',
    'text-embedding-3-small',
    'text-embedding-3-large',
    'x-y-v2',
    '--v2',
    '-v2',
    'abc',
    'aXbYc',
    'aba',
    'abba',
    'a.b',
    'aXb',
    'm+?',
    'mm',
    '(x|y)z',
    'xz',
    '[ab]c',
    '^${2}!',
    'back\\slash',
    'ft-a\nb',
    'a\n',
    'a\nb',
    'small\r\n-small',
    'ft-\u2028',
    '\ud83d\ude00-small',
  ];
  for (const glob of globs) for (const name of names) assertSameAsRegex(glob, name);
});

test('matches as the regex did on every short glob and name, line breaks included', () => {
  const names = strings(['a', 'b', '\n'], 5);
  for (const glob of strings(['a', 'b', '*', '\n'], 4)) {
    for (const name of names) assertSameAsRegex(glob, name);
  }
});

/**
 * Characters that indexOf searched in `name`, and the regex runs over it,
 * while `work` ran: a backtracking regex over a caller's name is what stalled.
 */
function searchWork(name: string, work: () => void): { searched: number; regexRuns: number } {
  const indexOf = String.prototype.indexOf;
  const exec = RegExp.prototype.exec;
  let searched = 0;
  let regexRuns = 0;
  String.prototype.indexOf = function (this: string, search: string, from = 0): number {
    const found = indexOf.call(this, search, from);
    if (this === name) searched += (found < 0 ? name.length : found + search.length) - from;
    return found;
  };
  RegExp.prototype.exec = function (this: RegExp, input: string): RegExpExecArray | null {
    if (input === name) regexRuns++;
    return exec.call(this, input);
  };
  try {
    work();
  } finally {
    String.prototype.indexOf = indexOf;
    RegExp.prototype.exec = exec;
  }
  return { searched, regexRuns };
}

test('a long name is searched once, left to right, by no regex', () => {
  const n = 64 * 1024;
  const dashes = '-'.repeat(n);
  const pairs = `${'a-'.repeat(n / 2)}v`;
  const brokenLine = `${'ab'.repeat(n / 2)}\n`;
  const cases: [string, string, boolean][] = [
    ['*-*-v2', dashes, false],
    ['-*', dashes, true],
    ['*-*-*-*-v', pairs, true],
    ['*a-*a-*a-*', pairs, true],
    ['*-*-v2', pairs, false],
    ['*a*b*a*b*', brokenLine, false],
    ['ab*ab\n', brokenLine, true],
  ];
  for (const [glob, name, expected] of cases) {
    let matched: boolean | undefined;
    const work = searchWork(name, () => {
      matched = globMatcher(glob)(name);
    });
    assert.equal(matched, expected, glob);
    assert.equal(work.regexRuns, 0, `${glob}: no regex runs over the name`);
    assert.ok(work.searched <= name.length + glob.length, `${glob}: ${work.searched} characters searched`);
  }
});
