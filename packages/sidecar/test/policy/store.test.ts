import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { type PolicySpecInput, policyHash, policySpecSchema } from '@veil/core';
import { PolicyStore } from '../../src/policy/store.ts';
import { startTestIssuer, type TestIssuer } from '../fixtures/issuer.ts';

const hashKey = randomBytes(32);

const spec = (vectorsPerMinute: number, extra: PolicySpecInput = {}) => ({
  limits: { vectorsPerMinute },
  ...extra,
});

describe('PolicyStore', () => {
  let dir: string;
  const stores: PolicyStore[] = [];
  const newStore = (options: Partial<ConstructorParameters<typeof PolicyStore>[0]> = {}) => {
    const store = new PolicyStore({ hashKey, stateDir: join(dir, 'state'), ...options });
    stores.push(store);
    return store;
  };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'veil-store-'));
  });
  afterEach(async () => {
    await Promise.all(stores.splice(0).map((store) => store.close()));
    await rm(dir, { recursive: true, force: true });
  });

  it('serves nothing until a policy is applied', async () => {
    const store = newStore();
    assert.equal(store.current(), undefined);
    assert.equal(await store.load(), 'none');
  });

  it('applies a good policy, answers its hash and persists it as the last good one', async () => {
    const store = newStore();
    const result = await store.apply('default', spec(100));
    const expected = policyHash(policySpecSchema.parse(spec(100)));
    assert.deepEqual(result, { ok: true, hash: expected, changed: true });
    assert.equal(store.current()?.hash, expected);
    assert.equal(store.current()?.name, 'default');
    const saved = JSON.parse(await readFile(join(dir, 'state', 'last-good-policy.json'), 'utf8'));
    assert.equal(saved.name, 'default');
    assert.equal(policyHash(policySpecSchema.parse(saved.spec)), expected);
  });

  it('says when the same policy comes again', async () => {
    const store = newStore();
    await store.apply('default', spec(100));
    const again = await store.apply('default', spec(100));
    assert.equal(again.ok && again.changed, false);
  });

  it('refuses a bad policy with the reason and keeps the previous one, in memory and on disk', async () => {
    const store = newStore();
    const good = await store.apply('default', spec(100));
    const file = join(dir, 'state', 'last-good-policy.json');
    const before = await readFile(file, 'utf8');
    const bad = await store.apply('default', { limits: { vectorsPerMinute: -1 } });
    assert.equal(bad.ok, false);
    assert.match(bad.ok ? '' : bad.reason, /limits\.vectorsPerMinute/);
    const unknownField = await store.apply('default', { surprise: true });
    assert.equal(unknownField.ok, false);
    assert.equal(store.current()?.hash, good.ok ? good.hash : '');
    assert.equal(await readFile(file, 'utf8'), before);
  });

  it('refuses a policy that validates but cannot be compiled', async () => {
    // Valid by the schema, but this sidecar has no key long enough for the hash operator.
    const store = newStore({ hashKey: randomBytes(8) });
    await store.apply('default', spec(100));
    const result = await store.apply('default', {
      masking: { rules: [{ name: 'emails', detectors: ['email'], operator: 'hash', scopes: ['forward'] }] },
    });
    assert.equal(result.ok, false);
    assert.match(result.ok ? '' : result.reason, /hash operator needs a hashKey/);
    assert.equal(store.current()?.spec.limits.vectorsPerMinute, 100);
  });

  it('refuses a service-account issuer no key could be discovered from, naming the field', async () => {
    const store = newStore();
    await store.apply('default', spec(100));
    const result = await store.apply('default', {
      authentication: { serviceAccountTokens: { issuer: 'kubernetes/serviceaccount' } },
    });
    assert.equal(result.ok, false);
    assert.match(
      result.ok ? '' : result.reason,
      /^authentication\.serviceAccountTokens\.issuer: .*or set jwksUri$/,
    );
    assert.equal(store.current()?.spec.limits.vectorsPerMinute, 100);
  });

  it('applies policies that arrive together one after another, the last one in force and on disk', async () => {
    const store = newStore();
    const results = await Promise.all([1, 2, 3].map((n) => store.apply('default', spec(n))));
    assert.deepEqual(
      results.map((result) => result.ok && result.changed),
      [true, true, true],
    );
    const last = policyHash(policySpecSchema.parse(spec(3)));
    assert.equal(store.current()?.hash, last);
    const saved = JSON.parse(await readFile(join(dir, 'state', 'last-good-policy.json'), 'utf8'));
    assert.equal(policyHash(policySpecSchema.parse(saved.spec)), last);
  });

  it('applies over a given policy only while that one is still in force', async () => {
    const store = newStore();
    await store.apply('default', spec(1));
    const seen = store.revision();
    await store.apply('default', spec(2));
    const late = await store.apply('default', spec(3), { onlyOver: seen });
    assert.equal(!late.ok && late.superseded, true);
    assert.equal(store.current()?.hash, policyHash(policySpecSchema.parse(spec(2))));
    const current = await store.apply('default', spec(3), { onlyOver: store.revision() });
    assert.equal(current.ok, true);
  });

  it('loads the last good policy in preference to the bootstrap file', async () => {
    const first = newStore();
    await first.apply('pushed', spec(200));
    const bootstrap = join(dir, 'bootstrap.json');
    await writeFile(bootstrap, JSON.stringify({ name: 'bootstrap', spec: spec(50) }));
    const restarted = newStore();
    assert.equal(await restarted.load(bootstrap), 'last-good');
    assert.equal(restarted.current()?.name, 'pushed');
    assert.equal(restarted.current()?.spec.limits.vectorsPerMinute, 200);
  });

  it('drops a revoked policy, and a restart on the same state serves neither it nor the bootstrap', async () => {
    const store = newStore();
    await store.apply('default', spec(100));
    const bootstrap = join(dir, 'bootstrap.json');
    await writeFile(bootstrap, JSON.stringify({ name: 'default', spec: spec(50) }));
    assert.deepEqual(await store.revoke('default', { onlyNamed: 'default' }), { ok: true, changed: true });
    assert.equal(store.current(), undefined);
    const saved = await readFile(join(dir, 'state', 'last-good-policy.json'), 'utf8');
    assert.deepEqual(JSON.parse(saved), { name: 'default', revoked: true });
    assert.deepEqual(await store.revoke('default'), { ok: true, changed: false }, 'once is enough');

    const restarted = newStore();
    assert.equal(await restarted.load(bootstrap), 'revoked');
    assert.equal(restarted.current(), undefined);

    // Re-created and pushed: saved again, and a restart serves it.
    const applied = await restarted.apply('default', spec(200));
    const again = newStore();
    assert.equal(await again.load(bootstrap), 'last-good');
    assert.equal(again.current()?.hash, applied.ok ? applied.hash : '');
  });

  it('refuses to revoke another policy, or over a policy applied meanwhile', async () => {
    const store = newStore();
    await store.apply('default', spec(100));
    const loaded = store.revision();
    const other = await store.revoke('other', { onlyNamed: 'default' });
    assert.deepEqual(other, { ok: false, reason: 'this sidecar enforces policy default, not other' });
    await store.apply('default', spec(200));
    const late = await store.revoke('default', { onlyOver: loaded });
    assert.equal(!late.ok && late.superseded, true);
    assert.equal(store.current()?.spec.limits.vectorsPerMinute, 200);
  });

  it('falls back to the bootstrap file when there is no usable last good policy', async () => {
    const bootstrap = join(dir, 'bootstrap.json');
    await writeFile(bootstrap, JSON.stringify({ name: 'bootstrap', spec: spec(50) }));
    const fresh = newStore();
    assert.equal(await fresh.load(bootstrap), 'bootstrap');
    assert.equal(fresh.current()?.name, 'bootstrap');

    // A corrupt last-good file is passed over, not trusted, and said: the bootstrap may be older.
    await writeFile(join(dir, 'state', 'last-good-policy.json'), '{"name": "x", "spec": ');
    const logged: string[] = [];
    const afterCrash = newStore({ log: (message) => logged.push(message) });
    assert.equal(await afterCrash.load(bootstrap), 'bootstrap');
    assert.equal(logged.length, 1);
    assert.match(logged[0] ?? '', /last-good-policy\.json is unreadable; serving the bootstrap policy/);
  });

  it('loads nothing from a bootstrap that is not a valid policy', async () => {
    const bootstrap = join(dir, 'bootstrap.json');
    await writeFile(
      bootstrap,
      JSON.stringify({ name: 'bootstrap', spec: { limits: { vectorsPerMinute: 0 } } }),
    );
    const store = newStore();
    assert.equal(await store.load(bootstrap), 'none');
    assert.equal(store.current(), undefined);
  });

  it('keeps the rate buckets always, and the authenticator when its settings do not change', async () => {
    const store = newStore();
    await store.apply('default', spec(100));
    const first = store.current();
    await store.apply('default', spec(100, { access: { rules: [{ name: 'team', groups: ['ml-team'] }] } }));
    assert.notEqual(store.current(), first);
    assert.equal(store.current()?.limiter, first?.limiter);
    assert.equal(store.current()?.authenticator, first?.authenticator);
    await store.apply('default', spec(300));
    assert.equal(store.current()?.limiter, first?.limiter);
  });

  it('keeps what each caller spent when the rate changes, either way', async () => {
    const store = newStore();
    // At two vectors a minute a spent bucket takes 30 s to allow one more: far beyond this test.
    await store.apply('default', spec(2));
    assert.equal(store.current()?.limiter.take('abuser', 2).ok, true);
    await store.apply('default', spec(1));
    assert.equal(store.current()?.limiter.take('abuser', 1).ok, false);
    await store.apply('default', spec(2));
    assert.equal(store.current()?.limiter.take('abuser', 1).ok, false);
    assert.equal(store.current()?.limiter.take('someone-else', 2).ok, true);
  });

  it('counts what is spent under the old rate while a lower one is being applied', async () => {
    // A stopped clock: nothing refills while the apply writes its file.
    const store = newStore({ now: () => 1_000_000 });
    await store.apply('default', spec(100));
    const old = store.current();
    assert.ok(old);
    let settled = false;
    const lowering = store.apply('default', spec(50)).finally(() => {
      settled = true;
    });
    // The apply has compiled by now and is writing its file: requests begun
    // under the old policy still charge it.
    await new Promise(setImmediate);
    assert.equal(settled, false, 'the apply is still writing its file');
    assert.equal(old.limiter.take('abuser', 100).ok, true);
    assert.equal((await lowering).ok, true);
    assert.equal(store.current()?.limiter.take('abuser', 1).ok, false, 'no fresh budget');
  });

  it('takes back a give-back for a request begun under the policy replaced', async () => {
    const store = newStore();
    await store.apply('default', spec(2));
    const old = store.current();
    assert.ok(old);
    assert.equal(old.limiter.take('caller', 2).ok, true);
    await store.apply('default', spec(3));
    old.limiter.giveBack('caller', 2);
    assert.equal(store.current()?.limiter.take('caller', 2).ok, true);
  });

  it('keeps what each caller spent across a revocation', async () => {
    const store = newStore();
    await store.apply('default', spec(2));
    assert.equal(store.current()?.limiter.take('abuser', 2).ok, true);
    await store.revoke('default');
    await store.apply('default', spec(2));
    assert.equal(store.current()?.limiter.take('abuser', 1).ok, false);
  });

  it('tells listeners of each new policy', async () => {
    const store = newStore();
    const heard: string[] = [];
    store.onChange((policy) => heard.push(policy.hash));
    const applied = await store.apply('default', spec(100));
    await store.apply('default', spec(100));
    await store.apply('default', { limits: { vectorsPerMinute: 0 } });
    assert.deepEqual(heard, [applied.ok ? applied.hash : '']);
  });

  it('warns once per version, in a pod only, of keys read over plain http on loopback', async () => {
    const loopback = {
      authentication: {
        oidc: [
          { issuer: 'https://login.example.com', audiences: ['veil'] },
          { issuer: 'http://127.0.0.1:8082', audiences: ['veil'] },
        ],
      },
    };
    const inPod = process.env.KUBERNETES_SERVICE_HOST;
    const logged: string[] = [];
    try {
      process.env.KUBERNETES_SERVICE_HOST = '10.96.0.1';
      const store = newStore({ log: (message) => logged.push(message) });
      const first = await store.apply('default', spec(100, loopback));
      await store.apply('default', spec(100, loopback));
      const second = await store.apply('default', spec(200, loopback));
      await store.apply('default', spec(100, loopback));
      await store.apply('default', spec(300));
      assert.equal(logged.length, 2, logged.join('\n'));
      for (const [i, applied] of [first, second].entries()) {
        assert.ok(applied.ok);
        assert.ok(logged[i]?.startsWith(`warning: policy default ${applied.hash} `), logged[i]);
        assert.match(logged[i] ?? '', /issuer http:\/\/127\.0\.0\.1:8082 .*authentication\.oidc\.1\.issuer/);
        assert.match(logged[i] ?? '', /model container shares the sidecar's loopback/);
        assert.doesNotMatch(logged[i] ?? '', /login\.example\.com/);
      }

      delete process.env.KUBERNETES_SERVICE_HOST;
      const outsidePod = newStore({ stateDir: join(dir, 'local'), log: (message) => logged.push(message) });
      assert.ok((await outsidePod.apply('default', spec(100, loopback))).ok);
      assert.equal(logged.length, 2, 'veil dev and tests run outside a pod, where loopback is their own');
    } finally {
      if (inPod === undefined) delete process.env.KUBERNETES_SERVICE_HOST;
      else process.env.KUBERNETES_SERVICE_HOST = inPod;
    }
  });
});

describe('PolicyStore: replacing the authenticator', () => {
  let idp: TestIssuer;
  before(async () => {
    idp = await startTestIssuer();
  });
  after(() => idp.stop());

  const auth = (clockSkewSeconds: number) => ({
    authentication: {
      oidc: [{ issuer: idp.issuer, audiences: ['veil'], algorithms: ['ES256' as const] }],
      clockSkewSeconds,
    },
  });

  it('closes the old authenticator only once in-flight requests had time to finish', async () => {
    const scheduled: (() => void)[] = [];
    const store = new PolicyStore({ hashKey, retire: (close) => scheduled.push(close) });
    try {
      await store.apply('default', auth(30));
      const old = store.current()?.authenticator;
      assert.ok(old);
      const token = await idp.mint({ sub: 'alice', aud: 'veil' });
      assert.equal((await old.authenticate(`Bearer ${token}`)).ok, true);
      assert.equal(old.stats().cachedTokens, 1);

      await store.apply('default', auth(10));
      assert.notEqual(store.current()?.authenticator, old);
      assert.equal(scheduled.length, 1);
      // A request that began under the old policy still authenticates with it.
      assert.equal((await old.authenticate(`Bearer ${token}`)).ok, true);
      assert.equal(old.stats().cachedTokens, 1, 'not closed yet');

      scheduled[0]?.();
      assert.equal(old.stats().cachedTokens, 0, 'closed once the delay passed');
    } finally {
      await store.close();
    }
  });

  it('closes retiring authenticators at once when the store closes', async () => {
    const scheduled: (() => void)[] = [];
    const store = new PolicyStore({ hashKey, retire: (close) => scheduled.push(close) });
    await store.apply('default', auth(30));
    const old = store.current()?.authenticator;
    assert.ok(old);
    const token = await idp.mint({ sub: 'alice', aud: 'veil' });
    await old.authenticate(`Bearer ${token}`);
    await store.apply('default', auth(10));
    await store.close();
    assert.equal(old.stats().cachedTokens, 0);
    // The delayed close that comes later finds nothing left to do.
    assert.equal(scheduled.length, 1);
    const [delayedClose] = scheduled;
    assert.ok(delayedClose);
    assert.doesNotThrow(delayedClose);
    assert.equal(old.stats().cachedTokens, 0);
  });

  it('schedules nothing when the authentication section is unchanged', async () => {
    const scheduled: (() => void)[] = [];
    const store = new PolicyStore({ hashKey, retire: (close) => scheduled.push(close) });
    try {
      await store.apply('default', auth(30));
      await store.apply('default', { ...auth(30), limits: { vectorsPerMinute: 5 } });
      assert.equal(scheduled.length, 0);
    } finally {
      await store.close();
    }
  });
});
