import assert from 'node:assert/strict';
import { test } from 'node:test';
import { csvCell, csvDocument } from '../../src/report/csv.ts';

test('plain cells stay as they are; empty for null', () => {
  assert.equal(csvCell('alice'), 'alice');
  assert.equal(csvCell(12.5), '12.5');
  assert.equal(csvCell(true), 'true');
  assert.equal(csvCell(null), '');
});

test('commas, quotes and line breaks are quoted with quotes doubled (RFC 4180)', () => {
  assert.equal(csvCell('a,b'), '"a,b"');
  assert.equal(csvCell('say "hi"'), '"say ""hi"""');
  assert.equal(csvCell('two\nlines'), '"two\nlines"');
  assert.equal(csvCell('cr\rhere'), '"cr\rhere"');
});

test('a text cell that starts like a spreadsheet formula is neutralised with a quote', () => {
  assert.equal(csvCell('=HYPERLINK("http://x","y")'), `"'=HYPERLINK(""http://x"",""y"")"`);
  assert.equal(csvCell('+1+1'), "'+1+1");
  assert.equal(csvCell('-2+3'), "'-2+3");
  assert.equal(csvCell('@SUM(A1)'), "'@SUM(A1)");
  assert.equal(csvCell('\t=1'), "'\t=1");
  assert.equal(csvCell('a=b'), 'a=b', 'only a leading character counts');
  // Opened where `;` separates cells, the quotes keep it one cell, not `x` and a formula.
  assert.equal(csvCell('may not use model x;=1+2'), '"may not use model x;=1+2"');
});

test('a document is a header and rows, each line ended by CRLF', () => {
  const text = csvDocument(
    ['id', 'subject', 'count'],
    [
      ['01A', 'bob, jr', 2],
      ['01B', null, 0],
    ],
  );
  assert.equal(text, 'id,subject,count\r\n01A,"bob, jr",2\r\n01B,,0\r\n');
});
