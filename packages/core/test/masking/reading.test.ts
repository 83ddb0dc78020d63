// Values written with Unicode spaces, dashes or invisible characters, which the
// model's tokenizer reads as the plain value: found, and masked in the text as
// written.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compileMasking, detectSpans } from '../../src/masking/index.ts';
import { hasHiddenForms, readingOf, readValue, writtenSpan } from '../../src/masking/reading.ts';
import type { DetectorName, MaskingRule } from '../../src/policy/schema.ts';
import { detectorNames } from '../../src/policy/schema.ts';

const options = { hashKey: new Uint8Array(32).fill(7) };

function engineWith(operator: MaskingRule['operator'], patterns: MaskingRule['patterns'] = []) {
  const rule: MaskingRule = {
    name: 'all',
    detectors: [...detectorNames],
    patterns,
    operator,
    scopes: ['forward', 'response'],
    responseFields: ['texts'],
  };
  return compileMasking([rule], options);
}

function masked(operator: MaskingRule['operator'], texts: string[]): string[] {
  return engineWith(operator).maskTexts(texts, 'forward', 'input').texts;
}

/** Spellings that used to be missed, and the plain spelling the model reads. */
const examples: [DetectorName, string, string][] = [
  ['payment-card', '4111\u00a01111\u00a01111\u00a01111', '4111 1111 1111 1111'],
  ['payment-card', '4111\u202f1111\u202f1111\u202f1111', '4111 1111 1111 1111'],
  ['payment-card', '4111\u20091111\u20091111\u20091111', '4111 1111 1111 1111'],
  ['payment-card', '4111\u200b1111\u200b1111\u200b1111', '4111111111111111'],
  ['ssn', '123\u00a045\u00a06789', '123 45 6789'],
  ['ssn', '123\u201345\u20136789', '123-45-6789'],
  ['iban', 'DE89\u00a03704\u00a00044\u00a00532\u00a00130\u00a000', 'DE89 3704 0044 0532 0130 00'],
  ['phone', '+44\u00a020\u00a07946\u00a00958', '+44 20 7946 0958'],
  ['phone', '01\u202f23\u202f45\u202f67\u202f89', '01 23 45 67 89'],
  ['email', 'john\u200b@example.com', 'john@example.com'],
  ['aws-key', 'AKIA\u200bIOSFODNN7EXAMPLE', 'AKIAIOSFODNN7EXAMPLE'],
  ['ssn', '\uff11\uff12\uff13\uff0d\uff14\uff15\uff0d\uff16\uff17\uff18\uff19', '123-45-6789'],
  ['payment-card', '\uff14\uff11\uff11\uff11 1111 1111 1111', '4111 1111 1111 1111'],
  ['email', '\uff4a\uff4f\uff48\uff4e\uff20example\uff0ecom', 'john@example.com'],
  // Deleted by tokenizers: U+FFFD, private use, lone surrogates, \v, \f, U+0085.
  ['payment-card', '4111\ufffd1111\ufffd1111\ufffd1111', '4111111111111111'],
  ['email', 'john\ufffd@example.com', 'john@example.com'],
  ['iban', 'DE89\ufffd3704\ufffd0044\ufffd0532\ufffd0130\ufffd00', 'DE89370400440532013000'],
  ['aws-key', 'AKIA\ufffdIOSFODNN7EXAMPLE', 'AKIAIOSFODNN7EXAMPLE'],
  ['phone', '+44\ufffd20\ufffd7946\ufffd0958', '+442079460958'],
  ['payment-card', '4111\ue0001111\uf8ff1111\ue0001111', '4111111111111111'],
  ['payment-card', '4111\u{f0000}1111\u{10fffd}1111\u{f0000}1111', '4111111111111111'],
  ['payment-card', '4111\ud8001111\udc001111\udbff1111', '4111111111111111'],
  ['payment-card', '4111\v1111\f1111\v1111', '4111111111111111'],
  ['payment-card', '4111\x851111\x851111\x851111', '4111111111111111'],
  // Read as spaces: tabs, line breaks, U+2028 and U+2029.
  ['payment-card', '4111\t1111\t1111\t1111', '4111 1111 1111 1111'],
  ['payment-card', '4111\n1111\n1111\n1111', '4111 1111 1111 1111'],
  ['payment-card', '4111 1111\r\n1111 1111', '4111 1111 1111 1111'],
  ['payment-card', '4111\u20281111\u20291111\r1111', '4111 1111 1111 1111'],
  ['ssn', '123\n45\n6789', '123 45 6789'],
  ['iban', 'DE89\t3704\t0044\t0532\t0130\t00', 'DE89 3704 0044 0532 0130 00'],
  ['iban', 'DE89 3704 0044\n0532 0130 00', 'DE89 3704 0044 0532 0130 00'],
  ['phone', '+44\t20\t7946\t0958', '+44 20 7946 0958'],
  // Folded to ASCII by NFKC: mathematical, superscript and circled digits, small forms, one dot leader.
  ['payment-card', '𝟒𝟏𝟏𝟏 𝟏𝟏𝟏𝟏 𝟏𝟏𝟏𝟏 𝟏𝟏𝟏𝟏', '4111 1111 1111 1111'],
  ['ssn', '𝟏𝟐𝟑-𝟒𝟓-𝟔𝟕𝟖𝟗', '123-45-6789'],
  ['ssn', '¹²³-⁴⁵-⁶⁷⁸⁹', '123-45-6789'],
  ['ssn', '①②③-④⑤-⑥⑦⑧⑨', '123-45-6789'],
  ['email', 'john\ufe6bexample.com', 'john@example.com'],
  ['email', 'john@example\ufe52com', 'john@example.com'],
  ['email', 'john@example\u2024com', 'john@example.com'],
  // Folded by NFKC to a dash the reading folds to '-': small and presentation em and en dashes, super- and subscript minus.
  ['ssn', '123\ufe5845\ufe586789', '123-45-6789'],
  ['ssn', '123\u207b45\u208b6789', '123-45-6789'],
  ['payment-card', '4111\ufe311111\ufe321111\ufe581111', '4111-1111-1111-1111'],
  // Combining marks after a digit, a space or punctuation join nothing: left out.
  ['payment-card', '4111\u03011111\u03011111\u03011111', '4111111111111111'],
  ['payment-card', '4111 1111\u0300 1111 1111', '4111 1111 1111 1111'],
  ['ssn', '123-45\u0301-6789', '123-45-6789'],
  ['iban', 'DE89 3704\u0308 0044 0532 0130 00', 'DE89 3704 0044 0532 0130 00'],
  ['email', 'john@\u0301example.com', 'john@example.com'],
  ['aws-key', 'AKIAIOSFODNN7\u0301EXAMPLE', 'AKIAIOSFODNN7EXAMPLE'],
  ['phone', '+44 20 7946\ufe0f\u20e3 0958', '+44 20 7946 0958'],
  ['ipv4', '192.168.\u{1d167}1.20', '192.168.1.20'],
];

const readAsSpace = /[\p{Zs}\t\n\r\u2028\u2029]/v;
const readAsDash = /[\u2010-\u2015\u2212]/;

/** How a BERT-style tokenizer that also folds NFKC reads one character, by Unicode properties. */
function readAs(ch: string): string {
  if (readAsSpace.test(ch)) return ' ';
  if (readAsDash.test(ch)) return '-';
  if (/[\p{Cc}\p{Cf}\p{Co}\p{Cs}\p{Noncharacter_Code_Point}\ufffd]/v.test(ch)) return '';
  const folded = ch.normalize('NFKC');
  if (folded.length !== 1) return ch;
  // What NFKC folds to is read in turn: "﹘" folds to "—", read as '-'.
  if (readAsSpace.test(folded)) return ' ';
  if (readAsDash.test(folded)) return '-';
  return folded < '\x80' ? folded : ch;
}

const markProperty = /[\p{Mn}\p{Me}]/v;
const printableAscii = Array.from({ length: 0x5f }, (_, i) => String.fromCharCode(0x20 + i));

/** Whether a mark after `before` is part of it: after a letter, or where NFC makes one character of them (≠). */
function markJoins(before: string, mark: string): boolean {
  return /[A-Za-z]/.test(before) || (before + mark).normalize('NFC').length < before.length + mark.length;
}

/** Where a mark is read as written, and where it is left out, by what is before it. */
function markReadWrongly(mark: string): boolean {
  if (readValue(mark) !== '' || !hasHiddenForms(mark)) return true;
  if (readValue(`\u3042${mark}`) !== `\u3042${mark}` || hasHiddenForms(`\u00e9${mark}`)) return true;
  return printableAscii.some((before) => {
    const joins = markJoins(before, mark);
    const expected = joins ? before + mark : before;
    return readValue(before + mark) !== expected || hasHiddenForms(before + mark) === joins;
  });
}

test('hidden forms are read as tokenizers read them, by Unicode properties and NFKC', () => {
  const wrong: string[] = [];
  for (let code = 0; code <= 0x10ffff; code++) {
    const ch = String.fromCodePoint(code);
    if (markProperty.test(ch)) {
      if (markReadWrongly(ch)) wrong.push(code.toString(16));
      continue;
    }
    const expected = readAs(ch);
    // Once alone and once in a two-byte string, which takes the other test.
    const hidden = hasHiddenForms(ch) && hasHiddenForms(`\u3042${ch}`);
    if (hidden !== (expected !== ch) || readValue(ch) !== expected) wrong.push(code.toString(16));
  }
  // A count and a sample: a diff of a long list would take minutes.
  assert.equal(wrong.length, 0, `read otherwise: ${wrong.slice(0, 16).join(' ')}…`);
});

test('surrogates are read as pairs, and alone are skipped', () => {
  const emoji = '\u{1f600}';
  assert.equal(hasHiddenForms(`card ${emoji} \u3042`), false);
  assert.equal(readValue(`a\ud83d${emoji}\ude00b`), `a${emoji}b`);
  assert.equal(readValue(`a${emoji}\u{1d7cf}${emoji}b`), `a${emoji}1${emoji}b`);
});

test('each example is found, its span covering the value as written', () => {
  for (const [detector, value] of examples) {
    const text = `ref: ${value} end`;
    assert.deepEqual(
      detectSpans(text),
      [{ detector, start: 5, end: 5 + value.length }],
      JSON.stringify(value),
    );
  }
});

test('each operator replaces the whole written value', () => {
  const values = examples.map(([, value]) => `ref: ${value} end`);
  const labels = examples.map(([detector]) => detector.toUpperCase().replace('-', '_'));
  assert.deepEqual(
    masked('redact', values),
    labels.map((label) => `ref: [${label}] end`),
  );
  assert.deepEqual(
    masked('drop', values),
    values.map(() => 'ref:  end'),
  );
  assert.deepEqual(
    masked('hash', values).map((text) => text.replace(/:[0-9a-f]{16}\]/, ']')),
    labels.map((label) => `ref: [${label}] end`),
  );
  assert.deepEqual(masked('mask', [values[0] ?? '', values[3] ?? '', values[9] ?? '']), [
    'ref: ****\u00a0****\u00a0****\u00a01111 end',
    'ref: ****\u200b****\u200b****\u200b1111 end',
    'ref: ****\u200b@******e.com end',
  ]);
});

test('a hash token is the same whether or not the value was written with hidden forms', () => {
  for (const [, hidden, plain] of examples) {
    const [a, b] = masked('hash', [hidden, plain]);
    assert.match(a ?? '', /^\[[A-Z0-9_]+:[0-9a-f]{16}\]$/);
    assert.equal(a, b, JSON.stringify(hidden));
  }
});

test('characters skipped inside a value are masked with it, those around it are kept', () => {
  assert.deepEqual(masked('redact', ['\u200bjohn\u200b@example.com\u200b', 'john\u{e0041}@example.com']), [
    '\u200b[EMAIL]\u200b',
    '[EMAIL]',
  ]);
});

test('values the reading joins to a neighbour or puts after a dash are still found as written', () => {
  assert.deepEqual(masked('redact', ['Card\u20134111 1111 1111 1111', '4111 1111 1111 1111\u200b2027']), [
    'Card\u2013[PAYMENT_CARD]',
    '[PAYMENT_CARD]\u200b2027',
  ]);
});

test('a character left out between two digit groups is read as joining them and as a break', () => {
  const values = [
    '4111\u03011111 1111 1111',
    '4111\u200b1111 1111 1111',
    '4111\ufffd1111 1111 1111',
    '4111 11\u200b11 1111 1111',
    '3782\u0301822463 10005',
  ];
  assert.deepEqual(
    masked('redact', values),
    values.map(() => '[PAYMENT_CARD]'),
  );
  const [token, ...others] = masked('hash', ['4111 1111 1111 1111', ...values.slice(0, 4)]);
  for (const other of others) assert.equal(other, token);
});

test('a text with hidden forms and more values than a call takes arguments is masked whole', () => {
  const count = 150_000;
  const [text = ''] = masked('redact', [`\u200b${'a@b.co '.repeat(count)}`]);
  assert.equal(text.split('[EMAIL]').length - 1, count);
  assert.equal(text.includes('a@b.co'), false);
});

test('a mark on a letter is part of it, and is kept', () => {
  assert.equal(hasHiddenForms('Tie\u0302\u0301ng Vie\u0323\u0302t, नमस्ते, jose\u0301, x \u2260 y'), false);
  assert.equal(readValue('a\u200b\u0301 =\u0338 4\u0301\u0302 .\u0301'), 'a\u0301 =\u0338 4 .');
  // NFD josé is not jose: their tokens differ.
  const [accented, plain] = masked('hash', ['jose\u0301@correo.es', 'jose@correo.es']);
  assert.match(accented ?? '', /^\[EMAIL:[0-9a-f]{16}\]$/);
  assert.notEqual(accented, plain);
});

test('user patterns see the reading too', () => {
  const engine = engineWith('redact', [{ name: 'employee-id', regex: 'EMP-[0-9]{6}' }]);
  const { texts } = engine.maskTexts(['id EMP\u2011123\u200b456 ok', 'id EMP-123456 ok'], 'forward', 'input');
  assert.deepEqual(texts, ['id [EMPLOYEE_ID] ok', 'id [EMPLOYEE_ID] ok']);
});

test('response fields are masked over the written value', () => {
  const { body } = engineWith('redact').maskResponse({ texts: ['card 4111\u00a01111\u00a01111\u00a01111'] });
  assert.deepEqual(body, { texts: ['card [PAYMENT_CARD]'] });
});

test('a text without hidden forms is masked exactly as before', () => {
  const text =
    'Mail a.b@example.com, card 4111 1111 1111 1111; SSN 123-45-6789, IBAN DE89 3704 0044 0532 0130 00, ' +
    'call +44 20 7946 0958, key AKIAIOSFODNN7EXAMPLE: “quoted” café 1’250…';
  assert.equal(hasHiddenForms(text), false);
  assert.deepEqual(masked('redact', [text]), [
    'Mail [EMAIL], card [PAYMENT_CARD]; SSN [SSN], IBAN [IBAN], ' +
      'call [PHONE], key [AWS_KEY]: “quoted” café 1’250…',
  ]);
});

test('a character of two code units read as one is mapped back whole', () => {
  const text = 'x \u{1d7d2}\u{1d7cf}\r\n\u{1d7cf}\u{1d7cf} y';
  const reading = readingOf(text);
  assert.equal(reading.text, 'x 41 11 y');
  assert.deepEqual(writtenSpan(reading, 2, 7), { start: 2, end: text.length - 2 });
  assert.deepEqual(writtenSpan(reading, 3, 4), { start: 4, end: 6 });
});

test('the reading maps its offsets back to the text as written', () => {
  const text = 'a\u200b\u200bb\u{e0041}c\u00a0d\u2013e';
  const reading = readingOf(text);
  assert.equal(reading.text, 'abc d-e');
  assert.deepEqual(writtenSpan(reading, 0, reading.text.length), { start: 0, end: text.length });
  assert.deepEqual(writtenSpan(reading, 1, 3), { start: 3, end: 7 });
  assert.equal(readValue(text), reading.text);
  assert.equal(readValue('plain'), 'plain');
});
