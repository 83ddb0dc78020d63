import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { generateSigningKey } from '@veil/core';
import { runVerify } from '../src/commands/evidence.ts';
import { parseTrustedKeys } from '../src/evidence/trusted.ts';
import { buildStream, captureIo, writeLocalStore } from './support/evidence.ts';

const key = generateSigningKey();

test('key ids one a line, with comments and blank lines', () => {
  const text = `# prod-eu sidecars\n${key.keyId}\n\n  ${key.keyId.replace(/^./, 'A')}  # rotated\n`;
  assert.deepEqual(parseTrustedKeys('f', text), [key.keyId, key.keyId.replace(/^./, 'A')]);
});

test('a JWK set or an array of JWKs and key ids, as thumbprints', () => {
  assert.deepEqual(parseTrustedKeys('f', JSON.stringify({ keys: [{ ...key.publicJwk, kid: 'x' }] })), [
    key.keyId,
  ]);
  assert.deepEqual(parseTrustedKeys('f', JSON.stringify([key.publicJwk, key.keyId])), [key.keyId, key.keyId]);
});

test('anything else is refused naming the file', () => {
  assert.throws(
    () => parseTrustedKeys('keys.txt', 'not a key id'),
    /--trusted-keys keys.txt: entry 1 is not a key id/,
  );
  assert.throws(
    () => parseTrustedKeys('keys.json', '{"keys": [{"kty": "RSA"}]}'),
    /--trusted-keys keys.json: expected/,
  );
  assert.throws(() => parseTrustedKeys('keys.json', '{"keys": []}'), /no key in the file/);
  assert.throws(() => parseTrustedKeys('empty', '# nothing\n'), /no key in the file/);
});

test('verify --trusted-keys refuses a stream signed by a key not in the file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'veil-cli-trusted-'));
  try {
    const built = buildStream({ batches: [[0, 1]] }, key);
    await writeLocalStore(join(dir, 'store'), built.objects);
    await writeFile(join(dir, 'trusted.txt'), `${key.keyId}\n`);
    await writeFile(join(dir, 'other.txt'), `${generateSigningKey().keyId}\n`);
    const trusted = captureIo(new Date());
    assert.equal(
      await runVerify([join(dir, 'store'), '--trusted-keys', join(dir, 'trusted.txt')], trusted.io),
      0,
    );
    const other = captureIo(new Date());
    assert.equal(
      await runVerify([join(dir, 'store'), '--trusted-keys', join(dir, 'other.txt')], other.io),
      1,
    );
    assert.ok(
      other.out.includes(
        `INVALID ${built.stream} ${built.prefix}manifests/00000000000000000000.json: key ${key.keyId} is not among the trusted keys`,
      ),
      other.out.join('\n'),
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
