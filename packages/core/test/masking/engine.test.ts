import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compileMasking, MaskingError } from '../../src/masking/index.ts';
import type { MaskingRule } from '../../src/policy/schema.ts';

const options = { hashKey: new Uint8Array(32).fill(7) };
const token = `ghp_${'a1B2c3D4e5'.repeat(3)}abcdef`;

function rule(fields: Partial<MaskingRule> & Pick<MaskingRule, 'name'>): MaskingRule {
  return {
    detectors: [],
    patterns: [],
    operator: 'redact',
    scopes: ['forward'],
    responseFields: [],
    ...fields,
  };
}

test('invalid rules are refused with the offending field path', () => {
  const cases: [unknown, string][] = [
    [[{ name: 'r', operator: 'redact', scopes: ['forward'] }], 'at least one detector or pattern'],
    [
      [{ name: 'r', detectors: ['passport'], operator: 'redact', scopes: ['forward'] }],
      'masking.rules.0.detectors.0',
    ],
    [
      [{ name: 'r', detectors: ['email'], operator: 'redact', scopes: ['response'] }],
      'masking.rules.0.responseFields',
    ],
    [
      [{ name: 'r', detectors: ['email'], operator: 'blur', scopes: ['forward'] }],
      'masking.rules.0.operator',
    ],
    [
      [rule({ name: 'r', detectors: ['email'] }), rule({ name: 'r', detectors: ['ssn'] })],
      'duplicate rule name',
    ],
  ];
  for (const [rules, fragment] of cases) {
    assert.throws(
      () => compileMasking(rules as MaskingRule[], options),
      (error: unknown) => error instanceof MaskingError && error.message.includes(fragment),
      fragment,
    );
  }
});

test('the hash operator needs a key of at least 16 bytes', () => {
  const hashing = [rule({ name: 'h', detectors: ['email'], operator: 'hash' })];
  assert.throws(() => compileMasking(hashing, { hashKey: new Uint8Array(8) }), MaskingError);
  assert.doesNotThrow(() =>
    compileMasking([rule({ name: 'r', detectors: ['email'] })], { hashKey: new Uint8Array() }),
  );
});

test('each scope applies only its own rules', () => {
  const engine = compileMasking(
    [
      rule({ name: 'emails', detectors: ['email'], scopes: ['forward', 'audit'] }),
      rule({ name: 'cards', detectors: ['payment-card'], operator: 'mask', scopes: ['audit'] }),
    ],
    options,
  );
  const text = 'alice@example.com paid with 4111 1111 1111 1111';
  assert.deepEqual(engine.maskTexts([text], 'forward', 'input').texts, [
    '[EMAIL] paid with 4111 1111 1111 1111',
  ]);
  assert.deepEqual(engine.maskTexts([text], 'audit', 'input').texts, [
    '[EMAIL] paid with **** **** **** 1111',
  ]);
  assert.ok(engine.hasScope('forward') && engine.hasScope('audit') && !engine.hasScope('response'));
});

test('actions count per rule, detector and field and never hold the value', () => {
  const engine = compileMasking(
    [
      rule({ name: 'pii', detectors: ['email', 'ssn'] }),
      rule({ name: 'secrets', detectors: ['github-token'] }),
    ],
    options,
  );
  const texts = ['a@example.com, b@example.com', 'nothing here', `SSN 123-45-6789 and ${token}`];
  const result = engine.maskTexts(texts, 'forward', 'input');
  assert.deepEqual(result.texts, ['[EMAIL], [EMAIL]', 'nothing here', 'SSN [SSN] and [GITHUB_TOKEN]']);
  assert.deepEqual(result.actions, [
    { detector: 'email', count: 2, field: 'input[0]', operator: 'redact', rule: 'pii' },
    { detector: 'ssn', count: 1, field: 'input[2]', operator: 'redact', rule: 'pii' },
    { detector: 'github-token', count: 1, field: 'input[2]', operator: 'redact', rule: 'secrets' },
  ]);
  const recorded = JSON.stringify(result.actions);
  for (const raw of ['a@example.com', '123-45-6789', '6789', token]) assert.ok(!recorded.includes(raw), raw);
});

test('overlapping matches are merged so no part of a value is left', () => {
  const engine = compileMasking(
    [rule({ name: 'all', detectors: ['email', 'github-token', 'iban', 'payment-card'] })],
    options,
  );
  const texts = [`clone https://${token}@github.com/acme/app`, 'IBAN DE89 3704 0044 0532 0130 00'];
  const { texts: masked, actions } = engine.maskTexts(texts, 'forward', 'input');
  assert.deepEqual(masked, ['clone https://[GITHUB_TOKEN]/acme/app', 'IBAN [IBAN]']);
  assert.deepEqual(
    actions.map((a) => a.detector),
    ['github-token', 'iban'],
  );
});

test('between rules, the first one in policy order masks an overlap', () => {
  const engine = compileMasking(
    [
      rule({ name: 'emails', detectors: ['email'], operator: 'drop' }),
      rule({ name: 'secrets', detectors: ['github-token'], operator: 'hash' }),
      rule({ name: 'emails-again', detectors: ['email'], operator: 'mask' }),
    ],
    options,
  );
  const { texts, actions } = engine.maskTexts([`x ${token}@github.com y`, 'c@example.com'], 'forward', 'in');
  assert.deepEqual(texts, ['x  y', '']);
  assert.deepEqual(
    actions.map((a) => `${a.rule}/${a.detector}/${a.field}`),
    ['emails/email/in[0]', 'emails/email/in[1]'],
  );
});

test('an overlap from rules of other operators takes the strongest operator', () => {
  const engine = compileMasking(
    [
      rule({ name: 'phones', detectors: ['phone'], operator: 'mask' }),
      rule({ name: 'emails', detectors: ['email'], operator: 'redact' }),
    ],
    options,
  );
  const { texts, actions } = engine.maskTexts(
    ['text +14155550100@sms.carrier-gateway.com now', 'call +14155550100 now'],
    'forward',
    'in',
  );
  assert.deepEqual(texts, ['text [EMAIL] now', 'call +*******0100 now']);
  assert.deepEqual(
    actions.map((a) => `${a.rule}/${a.detector}/${a.operator}/${a.field}`),
    ['emails/email/redact/in[0]', 'phones/phone/mask/in[1]'],
  );
});

test('hash tokens match across spellings so masked queries find masked documents', () => {
  const engine = compileMasking(
    [rule({ name: 'h', detectors: ['payment-card', 'email'], operator: 'hash' })],
    options,
  );
  const { texts } = engine.maskTexts(
    ['4111 1111 1111 1111', '4111-1111-1111-1111', 'Alice@Example.com', 'alice@example.com'],
    'forward',
    'input',
  );
  assert.equal(texts[0], texts[1]);
  assert.equal(texts[2], texts[3]);
  assert.match(texts[0] ?? '', /^\[PAYMENT_CARD:[0-9a-f]{16}\]$/);
  const other = compileMasking([rule({ name: 'h', detectors: ['email'], operator: 'hash' })], {
    hashKey: new Uint8Array(32).fill(8),
  });
  assert.notEqual(other.maskTexts(['alice@example.com'], 'forward', 'input').texts[0], texts[3]);
});

test('hash tokens of phone numbers and IPv4 addresses match across spellings', () => {
  const engine = compileMasking(
    [rule({ name: 'h', detectors: ['phone', 'ipv4'], operator: 'hash' })],
    options,
  );
  const token = (text: string): string => engine.maskTexts([text], 'forward', 'input').texts[0] ?? '';
  const same = [
    ['+1 415 555 0100', '(415) 555-0100', '1-415-555-0100', '415.555.0100', '001 415 555 0100'],
    ['+44 20 7946 0958', '+44 (0)20 7946 0958', '0044 20 7946 0958'],
    ['+49 30 12345678', '0049 30 12345678', '+49 (0)30 12345678'],
    ['415-555-0100x123', '+1 415 555 0100 ext. 123'],
    ['10.0.0.1', '010.000.000.001'],
  ];
  for (const spellings of same) {
    const tokens = spellings.map(token);
    assert.match(tokens[0] ?? '', /^\[(PHONE|IPV4):[0-9a-f]{16}\]$/);
    assert.deepEqual(
      tokens,
      spellings.map(() => tokens[0]),
      spellings.join(' / '),
    );
  }
  // Other numbers, or another extension, are other tokens; a national number
  // without its country code cannot be folded into the international form.
  assert.notEqual(token('415-555-0100x123'), token('415-555-0100'));
  assert.notEqual(token('+1 415 555 0101'), token('+1 415 555 0100'));
  assert.notEqual(token('020 7946 0958'), token('+44 20 7946 0958'));
});

test('hash tokens match whether an accent is composed or combining', () => {
  const engine = compileMasking([rule({ name: 'h', detectors: ['email'], operator: 'hash' })], options);
  const [composed, combining] = engine.maskTexts(
    ['Jos\u00e9@example.com', 'Jose\u0301@example.com'],
    'forward',
    'input',
  ).texts;
  assert.match(composed ?? '', /^\[EMAIL:[0-9a-f]{16}\]$/);
  assert.equal(combining, composed);
});

test('hash tokens of secrets match whatever the case of the parts the key does not depend on', () => {
  const engine = compileMasking(
    [rule({ name: 'h', detectors: ['aws-key', 'gcp-key', 'github-token', 'private-key'], operator: 'hash' })],
    options,
  );
  const gcp = `SyD4nq0TB8a1x2E3r4T5y6U7i8O9p0AsDfG`;
  const github = 'K7d1Qm2Zx9Lp4Rt6Vw8Yb0Nc3Fh5Jg7Sa1De';
  const body = '\nMHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oTNX1yB6PpW9oAoGCCqGSM49\n';
  const pairs = [
    ['AKIAIOSFODNN7EXAMPLE', 'akiaiosfodnn7example'],
    [`AIza${gcp}`, `aiza${gcp}`],
    [`ghp_${github}`, `GHP_${github}`],
    [
      `-----BEGIN EC PRIVATE KEY-----${body}-----END EC PRIVATE KEY-----`,
      `-----begin ec private  key-----${body}-----end ec private key-----`,
    ],
  ];
  for (const pair of pairs) {
    const [a, b] = engine.maskTexts(pair, 'forward', 'input').texts;
    assert.match(a ?? '', /^\[[A-Z_]+:[0-9a-f]{16}\]$/);
    assert.equal(a, b, pair[1]);
  }
  // Past the prefix a key is case-sensitive: another case is another key.
  const [upper, lower] = engine.maskTexts(
    [`AIza${gcp.toUpperCase()}`, `AIza${gcp.toLowerCase()}`],
    'forward',
    'input',
  ).texts;
  assert.notEqual(upper, lower);
  const secret = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
  const secrets = engine.maskTexts(
    [`secret_key=${secret}`, `secret_key=${secret.toUpperCase()}`],
    'forward',
    'input',
  ).texts;
  assert.notEqual(secrets[0], secrets[1]);
});

test('texts without matches come back unchanged and the input is not modified', () => {
  const engine = compileMasking([rule({ name: 'all', detectors: ['email', 'phone', 'ipv4'] })], options);
  const input = ['plain prose about version 1.2.3', ''];
  const result = engine.maskTexts(input, 'forward', 'input');
  assert.deepEqual(result, { texts: input, actions: [] });
  assert.notEqual(result.texts, input);
});

test('failures fail closed with a MaskingError that carries no text', () => {
  const engine = compileMasking([rule({ name: 'all', detectors: ['email'] })], options);
  const secret = 'alice@example.com';
  const notString = [secret, 42] as unknown as string[];
  assert.throws(
    () => engine.maskTexts(notString, 'forward', 'input'),
    (error: unknown) => error instanceof MaskingError && error.message === 'input[1] is not a string',
  );
  const exploding = new Proxy([secret], {
    get(target, property, receiver) {
      if (property === '0') throw new TypeError(`cannot read ${secret}`);
      return Reflect.get(target, property, receiver);
    },
  });
  assert.throws(
    () => engine.maskTexts(exploding, 'forward', 'input'),
    (error: unknown) => error instanceof MaskingError && !error.message.includes(secret),
  );
  assert.throws(() => engine.maskTexts([secret], 'response' as 'forward', 'input'), MaskingError);
});
