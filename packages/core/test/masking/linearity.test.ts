// A rejected candidate is searched again from its second character, so a
// detector whose candidates can reach to the end of the text does quadratic
// work on text made of near-misses. The work is counted, not timed: every
// regex run and every character it matched.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setImmediate } from 'node:timers/promises';
import { detectSpans } from '../../src/masking/index.ts';
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

// Building the reading of a text is linear too, but its cost lies in how V8
// keeps a string built piece by piece, not in regex runs, so no count of work
// in the code sees it: reading back from such a string flattens (copies) it
// each time, and a run of hidden forms made that quadratic. So the bound is on
// size: a quarter of a million of them in a row is read in well under a second,
// where the quadratic reading took tens of seconds per run. The timeout is that
// bound, generous for a loaded machine; it can only fire once the event loop is
// free, hence the turn after each run.
test('a long run of hidden forms is read without quadratic work', { timeout: 20_000 }, async () => {
  const length = 256 * 1024;
  for (const unit of ['\n', '\uff11', '\t', '\u3000']) {
    const text = `4111 ${unit.repeat(length)} 1111`;
    assert.deepEqual(detectSpans(text), [], JSON.stringify(unit));
    await setImmediate();
  }
});
