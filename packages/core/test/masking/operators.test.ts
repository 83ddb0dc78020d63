import assert from 'node:assert/strict';
import { test } from 'node:test';
import { drop, hashWith, mask, operatorFor, redact } from '../../src/masking/operators.ts';

const keyA = new Uint8Array(32).fill(1);
const keyB = new Uint8Array(32).fill(2);

test('redact names the detector in a placeholder', () => {
  assert.equal(redact('alice@example.com', 'EMAIL'), '[EMAIL]');
  assert.equal(operatorFor('redact', keyA)('x', 'EMPLOYEE_ID', 'x'), '[EMPLOYEE_ID]');
});

test('mask keeps the shape and the last four letters or digits', () => {
  assert.equal(mask('4242424242424242'), '************4242');
  assert.equal(mask('4242 4242 4242 4242'), '**** **** **** 4242');
  assert.equal(mask('123-45-6789'), '***-**-6789');
  assert.equal(mask('alice@example.com'), '*****@******e.com');
});

test('mask hides everything when four characters would be half the value', () => {
  assert.equal(mask('::1'), '::*');
  assert.equal(mask('10.0.0.1'), '**.*.*.*');
  assert.equal(mask('a1b2c3d'), '*******');
});

test('mask treats non-ASCII letters as letters', () => {
  assert.equal(mask('Zoë-Ærøskøbing'), '***-******bing');
});

test('hash is a keyed, deterministic token naming the detector', () => {
  const hash = hashWith(keyA);
  const token = hash('alice@example.com', 'EMAIL', 'alice@example.com');
  assert.match(token, /^\[EMAIL:[0-9a-f]{16}\]$/);
  assert.equal(hash('other spelling', 'EMAIL', 'alice@example.com'), token, 'the normalised value is hashed');
  assert.equal(hashWith(keyA)('x', 'EMAIL', 'alice@example.com'), token, 'same key, same token');
  assert.notEqual(hashWith(keyB)('x', 'EMAIL', 'alice@example.com'), token, 'another key, another token');
  assert.notEqual(hash('x', 'EMAIL', 'bob@example.com'), token);
  assert.ok(!token.includes('alice'));
});

test('drop removes the value', () => {
  assert.equal(drop(), '');
  assert.equal(operatorFor('drop', keyA)('secret', 'JWT', 'secret'), '');
});
