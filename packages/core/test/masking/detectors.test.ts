// The documented decisions of each detector, one look-alike at a time. The
// corpus test measures them in bulk.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { detectSpans } from '../../src/masking/index.ts';
import type { DetectorName } from '../../src/policy/schema.ts';

/** The values found in text, as `detector:value`. */
function found(text: string, names?: DetectorName[]): string[] {
  return detectSpans(text, names).map((s) => `${s.detector}:${text.slice(s.start, s.end)}`);
}

test('email stops before sentence punctuation and skips quotes', () => {
  assert.deepEqual(found('write to a.b@example.co.uk.'), ['email:a.b@example.co.uk']);
  assert.deepEqual(found("'sean.o'brien@example.ie'"), ["email:sean.o'brien@example.ie"]);
  assert.deepEqual(found('@alice, a@b, user@localhost, x..y@example.com'), []);
});

test('email takes letters of any script, and punycode top-level labels', () => {
  assert.deepEqual(found('to anna@müller.de, ivan@example.xn--p1ai and jöhn.smith@example.com'), [
    'email:anna@müller.de',
    'email:ivan@example.xn--p1ai',
    'email:jöhn.smith@example.com',
  ]);
  assert.deepEqual(found('почта: иван@пример.рф.'), ['email:иван@пример.рф']);
  assert.deepEqual(found('请联系support@example.com谢谢'), ['email:support@example.com']);
  assert.deepEqual(found('Übergröße@Lager, Москва@2024, café@home-office, 見積もり@本社'), []);
});

test('email local parts in scripts written without spaces take the run of their letters', () => {
  assert.deepEqual(found('联系：用户@例子.广告。メール ユーザー@例え.テスト まで, ติดต่อ ผู้ใช้@ตัวอย่าง.ไทย ครับ'), [
    'email:用户@例子.广告',
    'email:ユーザー@例え.テスト',
    'email:ผู้ใช้@ตัวอย่าง.ไทย',
  ]);
  // Nothing tells where in running text the address starts: the run is masked whole.
  assert.deepEqual(found('请联系用户123@163.com谢谢'), ['email:请联系用户123@163.com']);
  assert.deepEqual(found('see .用户@例子.广告'), ['email:用户@例子.广告']);
  // Marks of Latin letters that those scripts share stay in Latin local parts.
  assert.deepEqual(found('jo\u0303ao@example.com'), ['email:jo\u0303ao@example.com']);
  // Unit prices, and "@" for a place, are not addresses.
  assert.deepEqual(found('単価＠１００円．合計：４００円、単価@120円.送料@500円、渋谷@カフェ。'), []);
});

test('IPv4: addresses yes, version strings no', () => {
  assert.deepEqual(found('hosts 10.0.0.1:8080, 192.168.1.20. and 1.2.3.4'), [
    'ipv4:10.0.0.1',
    'ipv4:192.168.1.20',
    'ipv4:1.2.3.4',
  ]);
  assert.deepEqual(
    found('v1.2.3.4, 1.2.3.4-beta, 1.2.3.4+build, version 1.2.3.4, 1.2.3, 1.3.6.1.4.1, 256.1.1.1'),
    [],
  );
});

test('IPv6: compressed and full forms yes, scope operators and times no', () => {
  assert.deepEqual(found('[2001:db8::1]:443 and fe80::1%eth0'), ['ipv6:2001:db8::1', 'ipv6:fe80::1']);
  assert.deepEqual(found('Foo::Bar, std::vector, Abc::Def, 12:30:45, 00:1A:2B:3C:4D:5E'), []);
});

test('IPv6: the full form ending in an IPv4 has only six colons', () => {
  assert.deepEqual(found('peer 1:2:3:4:5:6:1.2.3.4 up'), ['ipv6:1:2:3:4:5:6:1.2.3.4']);
});

test('payment cards need a valid Luhn digit and shed trailing numbers', () => {
  assert.deepEqual(found('card 4111 1111 1111 1111 2027'), ['payment-card:4111 1111 1111 1111']);
  assert.deepEqual(found('card 4111 1111 1111 1112, 4111111111111111abc'), []);
  assert.deepEqual(found('two: 4111111111111111 5500000000000004'), [
    'payment-card:4111111111111111',
    'payment-card:5500000000000004',
  ]);
});

test('payment cards grouped by dashes between spaces, as typeset, are found', () => {
  assert.deepEqual(found('card 4111 - 1111 - 1111 - 1111, Amex 3782 – 822463 – 10005.'), [
    'payment-card:4111 - 1111 - 1111 - 1111',
    'payment-card:3782 – 822463 – 10005',
  ]);
  assert.deepEqual(found('4111 - 1111 - 1111 - 1112, 4111 - 1111-1111 1111, 4000 - 1500 - 250 - 99'), []);
});

test('payment cards after other numbers of their run are found', () => {
  assert.deepEqual(found('1001 4111111111111111 12/27'), ['payment-card:4111111111111111']);
  assert.deepEqual(found('qty 2 4111 1111 1111 1111'), ['payment-card:4111 1111 1111 1111']);
  // Unless it carries on their grouping: then it is the tail of a longer number.
  assert.deepEqual(found('cc=4603 4573 7565 8667 278'), []);
  assert.deepEqual(found('2024-4111 1111 1111 1111'), ['payment-card:4111 1111 1111 1111']);
});

test('payment cards after a card label and #, ., -, _ or /; after anything else such punctuation makes a code', () => {
  assert.deepEqual(
    found(
      'Card #4111111111111111; Acct#4111 1111 1111 1111; Card No.5500000000000004; card-4012888888881881',
    ),
    [
      'payment-card:4111111111111111',
      'payment-card:4111 1111 1111 1111',
      'payment-card:5500000000000004',
      'payment-card:4012888888881881',
    ],
  );
  assert.deepEqual(found('cc_4111111111111111 GET /card/4111000000000008'), [
    'payment-card:4111111111111111',
    'payment-card:4111000000000008',
  ]);
  assert.deepEqual(
    found('Order #4111111111111111 SKU-4111111111111111 v4.111.111 x_4111111111111111 0.4111111111111111'),
    [],
  );
  assert.deepEqual(found('Card #4111111111111112 discard-4111111111111111 scc_4111111111111111'), []);
});

test('payment cards of RuPay, Troy and UATP; 1 opens only a 15-digit UATP card', () => {
  assert.deepEqual(found('RuPay 8100 0000 0000 0002, Troy 9792 0000 0000 0003, UATP 1234 00000 000004'), [
    'payment-card:8100 0000 0000 0002',
    'payment-card:9792 0000 0000 0003',
    'payment-card:1234 00000 000004',
  ]);
  assert.deepEqual(found('ts 1000 0000 0000 0008 and 1000000000009 and 7100 0000 0000 0004'), []);
});

test('up to three spaces in a row split a value as one does', () => {
  assert.deepEqual(found('card 4111  0000   0000  0008, SSN 123  45  6789'), [
    'payment-card:4111  0000   0000  0008',
    'ssn:123  45  6789',
  ]);
  assert.deepEqual(found('IBAN DE89  3704  0044 0532   0130 00'), ['iban:DE89  3704  0044 0532   0130 00']);
  assert.deepEqual(found('card 4111    0000 0000 0008, 123    45 6789, DE89    3704 0044 0532 0130 00'), []);
  // The spaces break digit groups only, and both breaks of an SSN are alike.
  assert.deepEqual(found('DE89 37 04 0044 0532 0130 00, 123  45-6789'), []);
});

test('IBANs in either case, and digits of a mistyped IBAN are not a card', () => {
  assert.deepEqual(found('iban gb82 west 1234 5698 7654 32'), ['iban:gb82 west 1234 5698 7654 32']);
  assert.deepEqual(found('IBAN DE89 3704 0044 0532 0130 01'), []);
});

test('SSNs: grouped anywhere, bare only after a label', () => {
  assert.deepEqual(found('SSN: 123456789; ssn is 234567890; ref 123456789; 123-45-6789'), [
    'ssn:123456789',
    'ssn:234567890',
    'ssn:123-45-6789',
  ]);
  assert.deepEqual(found('000-12-3456 666-12-3456 900-12-3456 123-00-4567 123-45-0000'), []);
});

test('SSNs after a label and #; after # alone a grouped number is an order number', () => {
  assert.deepEqual(found('SSN#123-45-6789, SS#234-56-7890, SSN #345 67 8901'), [
    'ssn:123-45-6789',
    'ssn:234-56-7890',
    'ssn:345 67 8901',
  ]);
  assert.deepEqual(found('Order #123-45-6789, lesson#234-56-7890, #1234-56-7890'), []);
});

test('SSNs after a label and -, /, _ or ., as cards are found after one', () => {
  assert.deepEqual(found('SSN-123-45-6789, SSN/234-56-7890, ssn_345678901, SSN.456-78-9012'), [
    'ssn:123-45-6789',
    'ssn:234-56-7890',
    'ssn:345678901',
    'ssn:456-78-9012',
  ]);
  assert.deepEqual(found('part-123-45-6789, path/234-56-7890, id_345678901, lesson-456-78-9012'), []);
});

test('phones: plausible numbering plans only', () => {
  assert.deepEqual(found('call 020 7946 0958 24 hours a day'), ['phone:020 7946 0958']);
  assert.deepEqual(found('call (415) 555-2671 or +44 (0)20 7946 0958'), [
    'phone:(415) 555-2671',
    'phone:+44 (0)20 7946 0958',
  ]);
  assert.deepEqual(found('123-456-7890, 2024-01-15, +3.14159265, Order #415-555-2671, 05-11-2023'), []);
});

test('phones: an extension is part of the number', () => {
  assert.deepEqual(found('call 415-555-0100x123, (415) 555-0134 ext. 12 or +44 20 7946 0958 x204 today'), [
    'phone:415-555-0100x123',
    'phone:(415) 555-0134 ext. 12',
    'phone:+44 20 7946 0958 x204',
  ]);
  assert.deepEqual(found('model 415-555-0100xyz'), []);
});

test('phones: the international 00 prefix, before a country code in use', () => {
  assert.deepEqual(found('Berlin 0049 30 12345678, from Europe 001 415 555 0100'), [
    'phone:0049 30 12345678',
    'phone:001 415 555 0100',
  ]);
  assert.deepEqual(found('Account 0012 3456 7890, ref 0099 1234 5678, bare 00493012345678'), []);
});

test('JWTs need a JSON header with alg; a trailing full stop is not a segment', () => {
  const header = Buffer.from('{"alg":"HS256"}').toString('base64url');
  const bogus = Buffer.from('{"typ":"JWT"}').toString('base64url');
  assert.deepEqual(found(`token ${header}.eyJzdWIiOiIxIn0.c2ln.`), [`jwt:${header}.eyJzdWIiOiIxIn0.c2ln`]);
  assert.deepEqual(found(`token ${bogus}.eyJzdWIiOiIxIn0.c2ln`), []);
});

test('a JWT fills its run of segments, and may end a longer one', () => {
  const header = Buffer.from('{"alg":"HS256"}').toString('base64url');
  const jws = `${header}.eyJzdWIiOiIxIn0.c2ln`;
  const jwe = `${header}..aXY.Y2lwaGVy.dGFn`;
  assert.deepEqual(found(`${jws}.x ${jws}.x.y.z ${header}..c2ln`, ['jwt']), []);
  assert.deepEqual(found(`${jwe}. and ${jwe}`, ['jwt']), [`jwt:${jwe}`, `jwt:${jwe}`]);
  assert.deepEqual(found(`eyJhYQ.${jws} and ${'eyJhYQ.'.repeat(6)}${jws}`, ['jwt']), [
    `jwt:${jws}`,
    `jwt:${jws}`,
  ]);
});

test('a private key cut off before its END line is masked to the end of its body', () => {
  const key = '-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7';
  assert.deepEqual(found(`${key}\n\n(cut here)`), [`private-key:${key}`]);
  assert.deepEqual(found(`${key}"}`), [`private-key:${key}`]);
  assert.deepEqual(found('-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYI\n-----END PUBLIC KEY-----'), []);
});

test('a private key runs to its END line whatever its body holds', () => {
  const concatenated =
    '"-----BEGIN PRIVATE KEY-----\\n" +\n  "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\n" +\n  "BKcwggSjAgEAAoIBAQC7\\n" +\n  "-----END PRIVATE KEY-----"';
  assert.deepEqual(found(`const key = ${concatenated};`), [`private-key:${concatenated.slice(1, -1)}`]);
  const starred = '-----BEGIN RSA PRIVATE KEY-----\nMIIEvQ*IBADANBg"kqhkiG9w0\n-----END RSA PRIVATE KEY-----';
  assert.deepEqual(found(`key: ${starred} done`), [`private-key:${starred}`]);
  for (const header of ['-----BEGIN PRIVATE  KEY-----', '-----BEGIN RSA\nPRIVATE\nKEY-----']) {
    const key = `${header}\nMIIEvQIBADANBgkqhkiG9w0\n-----END PRIVATE KEY-----`;
    assert.deepEqual(found(`key: ${key}`), [`private-key:${key}`]);
  }
});

test('a private key cut off is not run on to an END line far behind it', () => {
  const cut = '-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0';
  const key = '-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0\n-----END PRIVATE KEY-----';
  const text = `${cut}"} ${'lorem ipsum '.repeat(1500)}${key}`;
  assert.deepEqual(found(text), [`private-key:${cut}`, `private-key:${key}`]);
});

test('cloud keys and tokens by their prefixes', () => {
  const aws = 'AKIAIOSFODNN7EXAMPLE';
  const secret = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
  assert.deepEqual(found(`id ${aws} aws_secret_access_key = ${secret}`), [
    `aws-key:${aws}`,
    `aws-key:${secret}`,
  ]);
  assert.deepEqual(found(`a 40-character run alone: ${secret}`), []);
  const gcp = `AIza${'x'.repeat(35)}`;
  assert.deepEqual(found(`key=${gcp}&q=1 AIzaShort`), [`gcp-key:${gcp}`]);
  const pat = `github_pat_${'A'.repeat(22)}_${'b'.repeat(59)}`;
  assert.deepEqual(found(`${pat} ghp_short`), [`github-token:${pat}`]);
});

test('fixed prefixes of secrets match in any case, as uncased models read them', () => {
  const aws = 'akiaiosfodnn7example';
  const github = `GHP_${'a1'.repeat(18)}`;
  const gcp = `aiza${'x'.repeat(35)}`;
  const pem = '-----begin rsa private key-----\nMIIEvQIBADANBgkqhkiG9w0\n-----end rsa private key-----';
  assert.deepEqual(found(`${aws} ${github} ${gcp} ${pem}`), [
    `aws-key:${aws}`,
    `github-token:${github}`,
    `gcp-key:${gcp}`,
    `private-key:${pem}`,
  ]);
  // Names and words of twenty letters are not key ids.
  assert.deepEqual(found('AsiaPacificSalesData asiaticlionsanctuary Akiaiosfodnn7example'), []);
});

test('only the requested detectors run', () => {
  assert.deepEqual(found('a@example.com 10.0.0.1', ['ipv4']), ['ipv4:10.0.0.1']);
});
