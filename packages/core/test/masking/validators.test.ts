import assert from 'node:assert/strict';
import { isIPv6 } from 'node:net';
import { test } from 'node:test';
import {
  ibanValid,
  ipv4Valid,
  jwtHeaderValid,
  luhnValid,
  mod97,
  parseIPv6,
  ssnValid,
} from '../../src/masking/index.ts';

test('Luhn accepts issuer test numbers and rejects any changed digit', () => {
  for (const card of [
    '4111111111111111',
    '5555555555554444',
    '378282246310005',
    '6011111111111117',
    '30569309025904',
  ]) {
    assert.ok(luhnValid(card), card);
    const last = Number(card.slice(-1));
    assert.ok(!luhnValid(card.slice(0, -1) + String((last + 1) % 10)), `${card} with a wrong check digit`);
  }
  assert.ok(luhnValid('79927398713'));
  assert.ok(!luhnValid('79927398710'));
  assert.ok(!luhnValid('4111 1111 1111 1111'), 'separators are the caller’s to strip');
  assert.ok(!luhnValid(''));
});

test('mod-97 and IBAN validation follow ISO 13616', () => {
  assert.equal(mod97('370400440532013000DE89'), 1);
  for (const iban of [
    'DE89370400440532013000',
    'GB82WEST12345698765432',
    'FR1420041010050500013M02606',
    'NL91ABNA0417164300',
    'NO9386011117947',
    'MT84MALT011000012345MTLCAST001S',
  ]) {
    assert.ok(ibanValid(iban), iban);
  }
  assert.ok(!ibanValid('DE89370400440532013001'), 'one digit changed');
  assert.ok(!ibanValid('DE88370400440532013000'), 'wrong check digits');
  assert.ok(!ibanValid('DE8937040044053201300'), 'one character short for DE');
  assert.ok(!ibanValid('XX89370400440532013000'), 'no such country');
  assert.ok(!ibanValid('de89370400440532013000'), 'compact upper-case form only');
});

test('IPv6 parser reads full, compressed and IPv4-suffixed forms', () => {
  assert.deepEqual(parseIPv6('2001:db8::1'), [0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]);
  assert.deepEqual(parseIPv6('::'), [0, 0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual(parseIPv6('::ffff:192.0.2.128'), [0, 0, 0, 0, 0, 0xffff, 0xc000, 0x0280]);
  assert.deepEqual(parseIPv6('1:2:3:4:5:6:7:8'), [1, 2, 3, 4, 5, 6, 7, 8]);
  for (const bad of [
    '1::2::3',
    '1:2:3:4:5:6:7',
    '1:2:3:4:5:6:7:8:9',
    '12345::1',
    'g::1',
    '1:2:3:4:5:6:7::8',
    ':1::2',
    '1::2:',
  ]) {
    assert.equal(parseIPv6(bad), null, bad);
  }
});

test('IPv6 parser agrees with node:net on a mixed list', () => {
  const samples = [
    '::1',
    '::',
    '1::',
    'fe80::1ff:fe23:4567:890a',
    '2001:0db8:85a3:0000:0000:8a2e:0370:7334',
    '2001:db8:0:0:1:0:0:1',
    '64:ff9b::198.51.100.7',
    '::ffff:1.2.3.4',
    '1:2:3:4:5:6:1.2.3.4',
    '1:2:3:4:5:6:7:1.2.3.4',
    '1:2:3:4:5::1.2.3.4',
    ':::',
    '1:::2',
    '12:30:45',
    'abc::def',
    'fffff::1',
    '::ffff:256.1.1.1',
    '1.2.3.4',
    'a:b:c:d:e:f:a:b',
    '2001:db8::1::',
    '0:0:0:0:0:0:0:0',
    '::0:0:0:0:0:0:0',
    '::1:2:3:4:5:6:7',
    '1:2:3:4:5:6:7::',
  ];
  for (const sample of samples) assert.equal(parseIPv6(sample) !== null, isIPv6(sample), sample);
});

test('IPv4 octets stay within 0-255', () => {
  assert.ok(ipv4Valid('192.168.1.1'));
  assert.ok(ipv4Valid('0.0.0.0'));
  assert.ok(ipv4Valid('010.000.000.001'));
  assert.ok(!ipv4Valid('256.1.1.1'));
  assert.ok(!ipv4Valid('1.2.3'));
  assert.ok(!ipv4Valid('1.2.3.4.5'));
  assert.ok(!ipv4Valid('1.2.3.1000'));
});

test('SSN rules exclude areas 000, 666 and 9xx, group 00, serial 0000 and voided numbers', () => {
  assert.ok(ssnValid('123', '45', '6789'));
  assert.ok(ssnValid('899', '01', '0001'));
  for (const [a, g, s] of [
    ['000', '12', '3456'],
    ['666', '12', '3456'],
    ['900', '12', '3456'],
    ['123', '00', '4567'],
    ['123', '45', '0000'],
    ['078', '05', '1120'],
  ] as const) {
    assert.ok(!ssnValid(a, g, s), `${a}-${g}-${s}`);
  }
});

test('a JWT header must decode to a JSON object with a string alg', () => {
  const encode = (text: string): string => Buffer.from(text).toString('base64url');
  assert.ok(jwtHeaderValid(encode('{"alg":"HS256","typ":"JWT"}')));
  assert.ok(!jwtHeaderValid(encode('{"typ":"JWT"}')));
  assert.ok(!jwtHeaderValid(encode('{"alg":5}')));
  assert.ok(!jwtHeaderValid(encode('["alg"]')));
  assert.ok(!jwtHeaderValid(encode('{"alg":"HS256"')));
  assert.ok(!jwtHeaderValid('eyJ!!'));
});
