import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { generateSigningKey } from '@veil/core';
import { runVerify } from '../src/commands/evidence.ts';
import { loadTrustedKeys, parseTrustedKeys } from '../src/evidence/trusted.ts';
import { buildStream, captureIo, writeLocalStore } from './support/evidence.ts';

const key = generateSigningKey();

test('a --trusted-keys file that cannot be read is named with the reason, in words', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'veil-trusted-'));
  try {
    const missing = join(dir, 'missing.txt');
    await assert.rejects(loadTrustedKeys(missing), {
      message: `--trusted-keys ${missing}: no such file or directory (ENOENT)`,
    });
    await assert.rejects(loadTrustedKeys(dir), {
      message: `--trusted-keys ${dir}: illegal operation on a directory (EISDIR)`,
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('key ids one a line, with comments and blank lines', () => {
  const text = `# prod-eu sidecars\n${key.keyId}\n\n  ${key.keyId.replace(/^./, 'A')}  # rotated\n`;
  assert.deepEqual(parseTrustedKeys('f', text), [
    { keyId: key.keyId },
    { keyId: key.keyId.replace(/^./, 'A') },
  ]);
});

test('a JWK set or an array of JWKs and key ids, as thumbprints', () => {
  assert.deepEqual(parseTrustedKeys('f', JSON.stringify({ keys: [{ ...key.publicJwk, kid: 'x' }] })), [
    { keyId: key.keyId },
  ]);
  assert.deepEqual(parseTrustedKeys('f', JSON.stringify([key.publicJwk, key.keyId])), [
    { keyId: key.keyId },
    { keyId: key.keyId },
  ]);
});

test('a key may carry the streams it signs, in either form', () => {
  const streams = 'prod-eu/ml/8a1f0c2e/*';
  assert.deepEqual(parseTrustedKeys('f', `${key.keyId}  ${streams} # embedder\n${key.keyId}\n`), [
    { keyId: key.keyId, streams },
    { keyId: key.keyId },
  ]);
  const json = JSON.stringify({
    keys: [
      { key: key.publicJwk, streams },
      { key: key.keyId, streams },
    ],
  });
  assert.deepEqual(parseTrustedKeys('f', json), [
    { keyId: key.keyId, streams },
    { keyId: key.keyId, streams },
  ]);
  assert.throws(() => parseTrustedKeys('keys.txt', `${key.keyId} a b`), /entry 1 is not a key id/);
  // Streams inside the JWK would be lost, leaving the key trusted for every stream.
  assert.throws(
    () => parseTrustedKeys('keys.json', JSON.stringify([{ ...key.publicJwk, streams }])),
    /--trusted-keys keys.json: expected/,
  );
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
    assert.ok(!trusted.out.some((line) => line.includes('--trusted-keys')), trusted.out.join('\n'));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('verify without --trusted-keys warns that no key is pinned', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'veil-cli-trusted-'));
  try {
    await writeLocalStore(join(dir, 'store'), buildStream({ batches: [[0, 1]] }, key).objects);
    const unpinned = captureIo(new Date());
    assert.equal(await runVerify([join(dir, 'store')], unpinned.io), 0);
    assert.ok(
      unpinned.out.includes(
        'WARN - -: no --trusted-keys: stream keys are checked for consistency only, not for who made them',
      ),
      unpinned.out.join('\n'),
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
