// The controller's key file is the pod's trust annotation as the kubelet projects
// it: an annotation the pod lacks is an empty file, and a broken one is refused
// with the file named, never its content.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { exportJWK, generateKeyPair } from 'jose';
import { ControllerKeyFile } from '../../src/admin/controllerkey.ts';

let dir: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'veil-controller-key-'));
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('an empty or broken key file is refused, naming the file and not its content', async () => {
  const file = join(dir, 'jwk.json');
  const key = new ControllerKeyFile(file);
  await writeFile(file, '');
  await assert.rejects(key.current(), /jwk\.json is empty: this pod was given no controller key/);
  const secretLooking = 'not-json-but-maybe-a-secret';
  await writeFile(file, secretLooking);
  await assert.rejects(key.current(), (error: Error) => {
    assert.match(error.message, /jwk\.json is not a JWK/);
    assert.doesNotMatch(error.message, new RegExp(secretLooking));
    return true;
  });
  const { publicKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  await writeFile(file, JSON.stringify({ ...(await exportJWK(publicKey)), alg: 'EdDSA' }));
  assert.ok(await key.current(), 'a valid key, once projected, is used');
  await writeFile(file, '');
  await assert.rejects(key.current(), /is empty/, 'no earlier key stands in for a missing one');
});
