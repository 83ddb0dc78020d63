// A rejected candidate is searched again from its second character, so a
// detector whose candidates can reach to the end of the text does quadratic
// work on text made of near-misses. The work is counted, not timed: every
// regex run and every character it matched.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type DetectedSpan, detectSpans } from '../../src/masking/index.ts';
import type { DetectorName } from '../../src/policy/schema.ts';

/** Near-misses for each detector, each repeated to fill a text. */
const nearMisses: Record<DetectorName, string[]> = {
  jwt: ['eyJaa.', 'a.eyJaa', 'eyJhbGciOiJIUzI1NiJ9.', 'eyJaa.eyJaa.eyJaa '],
  email: ['a@', 'a.a@a.', "'a@", '@a.', '用@', '用户@例.', '.用@例.广1'],
  phone: ['+1 (1)(1)(1) 1 ', '123-456-7890, ', '012 345 6, ', '+1-1-'],
  ssn: ['123-45-', '000-12-3456, ', 'SSN 000123456 ', 'SSN#123-45-', '123   45   '],
  'payment-card': [
    '4111 ',
    '4111-',
    '4',
    '41 ',
    '4111 - ',
    '4111\u200b',
    '4\u0301',
    '4111   ',
    'card#4111 ',
    'cc_1',
  ],
  iban: ['GB82 ', 'GB82WEST', 'DE89 3704 ', 'DE89   3704   ', 'GB82   '],
  ipv4: ['1.', '1.2.3.4.'],
  ipv6: ['1:', '::', '1::1:', '1:2:3:4:5:6:7:8:'],
  'private-key': [
    '-----BEGIN PRIVATE KEY-----',
    '-----BEGIN PRIVATE KEY-----\n-----END ',
    '-----BEGIN PRIVATE KEY-----"',
    '-----END PRIVATE KEY-----"-----BEGIN PRIVATE KEY-----"',
    `-----BEGIN ${' '.repeat(40)}PRIVATE`,
  ],
  'aws-key': ['AKIA', 'secret_key = ', `secretkey:${'A'.repeat(39)}`, 'AsiaPacificSalesData ', 'asia'],
  'gcp-key': ['AIza', `AIza${'a'.repeat(34)} `],
  'github-token': ['ghp_', `ghp_${'a'.repeat(300)} `, ' github_pat__', 'GHP_'],
};

/** Regex runs during `work`, plus the characters they matched. */
function regexWork(work: () => void): number {
  const exec = RegExp.prototype.exec;
  let count = 0;
  RegExp.prototype.exec = function (this: RegExp, input: string): RegExpExecArray | null {
    const match = exec.call(this, input);
    count += 1 + (match?.[0].length ?? 0);
    return match;
  };
  try {
    work();
  } finally {
    RegExp.prototype.exec = exec;
  }
  return count;
}

test('every detector does work linear in a text of near-misses', () => {
  const length = 32 * 1024;
  // A run of digits, so the detectors of numbers look at the rest.
  const digits = '12345678 ';
  for (const [name, units] of Object.entries(nearMisses) as [DetectorName, string[]][]) {
    for (const unit of units) {
      const text = `${digits}${unit.repeat(Math.ceil(length / unit.length))}`;
      const work = regexWork(() => detectSpans(text, [name]));
      assert.ok(work <= 64 * text.length, `${name} on ${JSON.stringify(unit)}: ${work} for ${text.length}`);
    }
  }
});

/** String methods that read a string's characters. */
const stringReads = [
  'at',
  'charAt',
  'charCodeAt',
  'codePointAt',
  'endsWith',
  'includes',
  'indexOf',
  'lastIndexOf',
  'slice',
  'startsWith',
  'substring',
] as const;

/**
 * The length of every string other than `text` that a string read or a regex
 * run went through during `work`: reading back from a string being built
 * counts the whole of it each time.
 */
function charactersReadBesides(text: string, work: () => void): number {
  let count = 0;
  const seen = (receiver: string): void => {
    if (receiver !== text) count += receiver.length;
  };
  const originals = stringReads.map((name) => [name, String.prototype[name]] as const);
  const exec = RegExp.prototype.exec;
  for (const [name, original] of originals) {
    const counted = function (this: string, ...args: unknown[]): unknown {
      seen(this);
      return (original as (...args: unknown[]) => unknown).apply(this, args);
    };
    Object.defineProperty(String.prototype, name, { value: counted, configurable: true, writable: true });
  }
  RegExp.prototype.exec = function (this: RegExp, input: string): RegExpExecArray | null {
    seen(input);
    return exec.call(this, input);
  };
  try {
    work();
  } finally {
    RegExp.prototype.exec = exec;
    for (const [name, original] of originals) {
      Object.defineProperty(String.prototype, name, { value: original, configurable: true, writable: true });
    }
  }
  return count;
}

// Building the reading of a text is linear too, but its cost lies in how V8
// keeps a string built piece by piece, not in regex runs: reading a character
// back from such a string flattens (copies) it each time, and a run of hidden
// forms read so was quadratic. So what is counted is the characters of the
// strings read other than the text itself, the string being built among them.
// A read by index (`read[i]`) calls no method and goes uncounted.
test('a long run of hidden forms is read without quadratic work', () => {
  const length = 64 * 1024;
  for (const unit of ['\n', '\uff11', '\t', '\u3000']) {
    const text = `4111 ${unit.repeat(length)} 1111`;
    let spans: DetectedSpan[] = [];
    const read = charactersReadBesides(text, () => {
      spans = detectSpans(text);
    });
    assert.deepEqual(spans, [], JSON.stringify(unit));
    assert.ok(
      read <= 64 * text.length,
      `${JSON.stringify(unit)}: ${read} characters read for ${text.length}`,
    );
  }
});
