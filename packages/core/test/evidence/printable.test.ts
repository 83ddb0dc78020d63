import assert from 'node:assert/strict';
import { test } from 'node:test';
import { printable, quoted } from '../../src/evidence/printable.ts';

test('text without control characters prints as it is', () => {
  for (const text of [
    'v1/prod/ml/uid/0/batches/00000000000000000001.ndjson.gz',
    'prod/é✓/0',
    'Grüße, 名前',
  ]) {
    assert.equal(printable(text), text);
  }
});

test('C0, DEL and C1 controls are escaped, CSI included', () => {
  assert.equal(printable('a\nb'), '"a\\nb"');
  assert.equal(printable('a\u001b[2Jb'), '"a\\u001b[2Jb"');
  assert.equal(printable('a\u007fb'), '"a\\u007fb"');
  assert.equal(printable('\u009b2J\u009bH'), '"\\u009b2J\\u009bH"');
  assert.equal(printable('\u0085'), '"\\u0085"');
});

test('bidirectional and other format controls, and line separators, are escaped', () => {
  // U+202E shows what follows right to left: "DILAV" reads as VALID.
  assert.equal(printable('x\u202eDILAV'), '"x\\u202eDILAV"');
  for (const control of ['\u061c', '\u200e', '\u200f', '\u202a', '\u2066', '\u2069', '\u200b', '\ufeff']) {
    const hex = control.charCodeAt(0).toString(16).padStart(4, '0');
    assert.equal(printable(`a${control}b`), `"a\\u${hex}b"`, hex);
  }
  assert.equal(printable('a\u2028b\u2029'), '"a\\u2028b\\u2029"');
  // A format control past U+FFFF (a tag character) is escaped as its surrogate pair.
  assert.equal(printable('a\u{e0001}b'), '"a\\udb40\\udc01b"');
});

test('quoted text keeps quotes and backslashes unambiguous', () => {
  assert.equal(quoted('say "hi" \\ \u009b'), '"say \\"hi\\" \\\\ \\u009b"');
  assert.equal(JSON.parse(quoted('x\u202e\u009by')), 'x\u202e\u009by');
});
