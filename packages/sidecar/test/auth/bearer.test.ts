import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_TOKEN_LENGTH, peekIssuer, readBearerToken } from '../../src/auth/bearer.ts';
import { AuthError } from '../../src/auth/identity.ts';

const TOKEN = 'eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlLmNvbSJ9.c2ln';

function reasonOf(run: () => unknown): string {
  try {
    run();
    return 'ok';
  } catch (error) {
    assert.ok(error instanceof AuthError);
    return error.reason;
  }
}

describe('readBearerToken', () => {
  it('takes the token from a Bearer credential, whatever the scheme case and spacing', () => {
    assert.equal(readBearerToken(`Bearer ${TOKEN}`), TOKEN);
    assert.equal(readBearerToken(`bearer ${TOKEN}`), TOKEN);
    assert.equal(readBearerToken(`BEARER \t ${TOKEN}  `), TOKEN);
  });

  it('tells a missing token from a malformed one', () => {
    const cases: [string | undefined, string][] = [
      [undefined, 'missing_token'],
      ['   ', 'missing_token'],
      ['Bearer', 'missing_token'],
      ['Bearertoken', 'malformed_token'],
      [`Token ${TOKEN}`, 'malformed_token'],
      [`Bearer ${TOKEN} extra`, 'malformed_token'],
      ['Bearer a.b', 'malformed_token'],
      ['Bearer a+b.c/d.e=', 'malformed_token'],
    ];
    for (const [header, reason] of cases) {
      assert.equal(
        reasonOf(() => readBearerToken(header)),
        reason,
        `for ${String(header)}`,
      );
    }
  });

  it('refuses an oversized token without decoding it', () => {
    const huge = `${'a'.repeat(MAX_TOKEN_LENGTH)}.b.c`;
    assert.equal(
      reasonOf(() => readBearerToken(`Bearer ${huge}`)),
      'malformed_token',
    );
  });
});

describe('peekIssuer', () => {
  it('reads the unverified iss claim', () => {
    assert.equal(peekIssuer(TOKEN), 'https://idp.example.com');
  });

  it('refuses a payload that is not a JSON object, or names no issuer', () => {
    assert.equal(
      reasonOf(() => peekIssuer('eyJhbGciOiJFUzI1NiJ9.bm90LWpzb24.c2ln')),
      'malformed_token',
    );
    assert.equal(
      reasonOf(() => peekIssuer('eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOjF9.c2ln')),
      'unknown_issuer',
    );
  });
});
