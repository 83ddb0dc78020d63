import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  compileMasking,
  compilePatternProblems,
  MaskingError,
  maskingRuleProblems,
} from '../../src/masking/index.ts';
import type { MaskingRule } from '../../src/policy/schema.ts';

const key = { hashKey: new Uint8Array(32) };

function rule(name: string, patterns: { name: string; regex: string }[]): MaskingRule {
  return { name, detectors: [], patterns, operator: 'redact', scopes: ['forward'], responseFields: [] };
}

test('RE2 rejects backreferences, lookaround and broken syntax, with field paths', () => {
  const rules = [
    rule('fine', [{ name: 'employee-id', regex: 'EMP-[0-9]{6}' }]),
    rule('bad', [
      { name: 'backref', regex: '(a)\\1' },
      { name: 'lookahead', regex: 'a(?=b)' },
      { name: 'negative-lookahead', regex: 'a(?!b)' },
      { name: 'lookbehind', regex: '(?<=a)b' },
      { name: 'unclosed', regex: '[a-z' },
      { name: 'empty', regex: 'x*' },
    ]),
  ];
  const problems = compilePatternProblems(rules);
  assert.deepEqual(
    problems.map((p) => p.path),
    [1, 2, 3, 4, 5, 6].map((i) => `masking.rules.1.patterns.${i - 1}.regex`),
  );
  assert.ok(problems.slice(0, 5).every((p) => p.message.startsWith('not a valid RE2 pattern')));
  assert.equal(problems[5]?.message, 'pattern matches the empty string');
  assert.deepEqual(
    compilePatternProblems(rules, 'spec.masking.rules')[0]?.path,
    'spec.masking.rules.1.patterns.0.regex',
  );
});

test('a pattern that only ever matches between characters is refused, naming its field', () => {
  const rules = [
    rule('fine', [{ name: 'word-id', regex: '\\bID-[0-9]+\\b' }]),
    rule('anchors', [
      { name: 'boundary', regex: '\\b' },
      { name: 'word-start', regex: '(?i)\\b\\b' },
      { name: 'optional-after-boundary', regex: '\\b(?:EMP)?' },
    ]),
  ];
  const problems = compilePatternProblems(rules);
  assert.deepEqual(
    problems.map((p) => p.path),
    [0, 1, 2].map((i) => `masking.rules.1.patterns.${i}.regex`),
  );
  for (const problem of problems)
    assert.match(problem.message, /matches only the empty string inside a text/);
  assert.throws(
    () => compileMasking([rule('anchors', [{ name: 'boundary', regex: '\\b' }])], key),
    (error: unknown) =>
      error instanceof MaskingError && error.message.includes('matches only the empty string inside a text'),
  );
});

test('duplicate rule names are a problem too', () => {
  const problems = maskingRuleProblems([rule('a', []), rule('b', []), rule('a', [])]);
  assert.deepEqual(problems, [{ path: 'masking.rules.2.name', message: 'duplicate rule name' }]);
});

test('compileMasking refuses a rejected pattern with a clear error', () => {
  assert.throws(
    () => compileMasking([rule('bad', [{ name: 'backref', regex: '(a)\\1' }])], key),
    (error: unknown) =>
      error instanceof MaskingError && error.message.includes('masking.rules.0.patterns.0.regex'),
  );
});

test('user patterns mask with a label named after the pattern', () => {
  const engine = compileMasking([rule('ids', [{ name: 'employee-id', regex: 'EMP-[0-9]{6}' }])], key);
  const { texts, actions } = engine.maskTexts(
    ['ask EMP-123456 or EMP-654321', 'héllo 😀 EMP-000001'],
    'forward',
    'input',
  );
  assert.deepEqual(texts, ['ask [EMPLOYEE_ID] or [EMPLOYEE_ID]', 'héllo 😀 [EMPLOYEE_ID]']);
  assert.deepEqual(actions, [
    { detector: 'pattern:employee-id', count: 2, field: 'input[0]', operator: 'redact', rule: 'ids' },
    { detector: 'pattern:employee-id', count: 1, field: 'input[1]', operator: 'redact', rule: 'ids' },
  ]);
});

test('user patterns take RE2 flags inline', () => {
  const engine = compileMasking([rule('codes', [{ name: 'code', regex: '(?i)project-x' }])], key);
  assert.deepEqual(engine.maskTexts(['PROJECT-X launch'], 'forward', 'input').texts, ['[CODE] launch']);
});
