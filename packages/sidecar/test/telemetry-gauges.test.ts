// The gauges an operator alerts on when a sidecar falls behind: the policy in
// force and when it changed, and the spool's capacity beside its fill. A real
// sidecar with a real spool; the change time read from a clock of the test.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { sidecarConfigSchema } from '../src/config.ts';
import { type RunningSidecar, startSidecar } from '../src/sidecar.ts';
import { startTestIssuer, type TestIssuer } from './fixtures/issuer.ts';
import { call, POD_UID, testPolicy } from './fixtures/sidecar.ts';

let dir: string;
let issuer: TestIssuer;
let sidecar: RunningSidecar;
let clockMs = 1_700_000_000_000;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'veil-gauges-'));
  issuer = await startTestIssuer();
  sidecar = await startSidecar(
    sidecarConfigSchema.parse({
      upstream: 'http://127.0.0.1:9',
      host: '127.0.0.1',
      proxyPort: 0,
      adminHost: '127.0.0.1',
      adminPort: 0,
      stateDir: join(dir, 'state'),
      auditDir: join(dir, 'evidence'),
      spoolDir: join(dir, 'spool'),
      spoolCapacityBytes: 8 * 1024 * 1024,
      pod: { namespace: 'test', name: 'embed-0', uid: POD_UID },
    }),
    { log: () => undefined, now: () => clockMs },
  );
});

after(async () => {
  await sidecar?.close();
  await issuer?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** Each sample of `name`, as its label text and value. */
async function samples(name: string): Promise<{ labels: string; value: number }[]> {
  const text = (await call(`${sidecar.adminUrl}/metrics`)).text;
  return [...text.matchAll(new RegExp(`^${name}(?:\\{([^}]*)\\})? (\\S+)$`, 'gm'))].map((m) => ({
    labels: m[1] ?? '',
    value: Number(m[2]),
  }));
}

/** `veil_policy_info` as hash and value, in the order served. */
async function versions(): Promise<{ hash: string | undefined; value: number }[]> {
  return (await samples('veil_policy_info')).map((s) => {
    assert.match(s.labels, /(^|,)name="team"(,|$)/);
    return { hash: /(?:^|,)hash="([^"]*)"/.exec(s.labels)?.[1], value: s.value };
  });
}

async function changedAt(): Promise<number[]> {
  return (await samples('veil_policy_last_change_timestamp_seconds')).map((s) => s.value);
}

test('the policy in force, and when it last changed, are gauges; versions before read 0', async () => {
  assert.deepEqual(await versions(), [], 'no policy yet: no version');
  assert.deepEqual(await changedAt(), [1_700_000_000], 'the start counts as a change');

  clockMs += 60_000;
  const first = await sidecar.store.apply('team', testPolicy([issuer]));
  assert.ok(first.ok);
  assert.deepEqual(await versions(), [{ hash: first.hash, value: 1 }]);
  assert.deepEqual(await changedAt(), [1_700_000_060]);

  // The same version again is no change.
  clockMs += 60_000;
  assert.deepEqual(await sidecar.store.apply('team', testPolicy([issuer])), { ...first, changed: false });
  assert.deepEqual(await changedAt(), [1_700_000_060]);

  const second = await sidecar.store.apply(
    'team',
    testPolicy([issuer], { limits: { vectorsPerMinute: 120 } }),
  );
  assert.ok(second.ok);
  assert.deepEqual(await versions(), [
    { hash: first.hash, value: 0 },
    { hash: second.hash, value: 1 },
  ]);
  assert.deepEqual(await changedAt(), [1_700_000_120]);

  // Revoked: no version reads 1.
  clockMs += 60_000;
  assert.ok((await sidecar.store.revoke('team')).ok);
  assert.deepEqual(await versions(), [
    { hash: first.hash, value: 0 },
    { hash: second.hash, value: 0 },
  ]);
  assert.deepEqual(await changedAt(), [1_700_000_180]);
});

test("the spool's capacity is served beside its fill", async () => {
  assert.deepEqual(
    (await samples('veil_audit_spool_capacity_bytes')).map((s) => s.value),
    [8 * 1024 * 1024],
  );
  assert.equal((await samples('veil_audit_spool_bytes')).length, 1);
});
