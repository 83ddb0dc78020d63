// The admin port: probes, Prometheus metrics and controller policy pushes
// (ACK with the hash and enforced at once; NACK keeping the last good policy;
// a token spent once, and only on the policy it names). Pushes go over TLS,
// verified as the controller verifies them; tls.test.ts covers the transport.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type PolicySpec, policyHash, policySpecSchema } from '@veil/core';
import { type CryptoKey, exportJWK, generateKeyPair, type JWTPayload, SignJWT } from 'jose';
import { CONTROLLER_ISSUER, sidecarAudience } from '../../src/admin/policy.ts';
import { startTestIssuer, type TestIssuer } from '../fixtures/issuer.ts';
import {
  AUDIENCE,
  call,
  POD_UID,
  type SidecarFixture,
  startSidecarFixture,
  TEAM,
  testPolicy,
} from '../fixtures/sidecar.ts';

const EMAIL = 'pat.lee@example.net';

/** RFC 6750's challenge to a bearer token that did not pass. */
const invalidToken = 'Bearer error="invalid_token"';

type Push = { name: string; spec: unknown };

/** The `policy` claim the controller signs for a body: its name and content hash. */
function policyClaim(body: Push): { name: string; hash: string } {
  const spec = policySpecSchema.safeParse(body.spec);
  // A spec that fails validation has no content hash; any well-formed one stands in.
  return { name: body.name, hash: spec.success ? policyHash(spec.data) : `sha256:${'0'.repeat(64)}` };
}

/** A controller token with exactly `claims` besides iss, aud, iat and exp. */
function signedToken(
  key: CryptoKey,
  claims: JWTPayload,
  audience = sidecarAudience(POD_UID),
): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'EdDSA' })
    .setIssuer(CONTROLLER_ISSUER)
    .setAudience(audience)
    .setIssuedAt()
    .setExpirationTime('2m')
    .sign(key);
}

/** A controller token for pushing `body`, as the controller mints one: a fresh jti, the body's policy claim. */
function pushToken(key: CryptoKey, body: Push, audience = sidecarAudience(POD_UID)): Promise<string> {
  return signedToken(key, { jti: randomUUID(), policy: policyClaim(body) }, audience);
}

/** `veil_requests_total` for one api and outcome, 0 when absent. */
function requestsCounted(metrics: string, api: string, outcome: string): number {
  for (const line of metrics.split('\n')) {
    if (!line.startsWith('veil_requests_total{')) continue;
    if (line.includes(`api="${api}"`) && line.includes(`outcome="${outcome}"`)) {
      return Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return 0;
}

describe('admin port', () => {
  let fixture: SidecarFixture;
  let controller: CryptoKey;
  let impostor: CryptoKey;
  let token: string;
  let basePolicy: PolicySpec;

  const push = (body: unknown, bearer: string | undefined) => {
    const tls = fixture.adminTls;
    if (tls === undefined) throw new Error('the fixture has no admin certificate');
    return call(`${tls.url}/v1/policy`, body, { method: 'PUT', token: bearer, dispatcher: tls.dispatcher });
  };
  const embed = () => call(`${fixture.url}/v1/embeddings`, { model: 'm', input: `mail ${EMAIL}` }, { token });

  before(async () => {
    const pair = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
    controller = pair.privateKey;
    impostor = (await generateKeyPair('EdDSA', { crv: 'Ed25519' })).privateKey;
    fixture = await startSidecarFixture({
      controllerKey: { ...(await exportJWK(pair.privateKey)), alg: 'EdDSA' },
      config: { policyName: 'test' },
    });
    basePolicy = testPolicy([fixture.issuer]);
    token = await fixture.token();
  });
  after(() => fixture.close());

  /** The policy this sidecar enforces, in another version: its own rate. */
  const version = (vectorsPerMinute: number): Push => ({
    name: 'test',
    spec: { ...basePolicy, limits: { ...basePolicy.limits, vectorsPerMinute } },
  });

  it('answers /healthz', async () => {
    const answer = await call(`${fixture.adminUrl}/healthz`);
    assert.equal(answer.status, 200);
    assert.deepEqual(answer.json, { status: 'ok' });
  });

  it('fails /healthz once a spool write has failed, so the kubelet restarts it to recover its spool', async () => {
    fixture.sink.broken = true;
    try {
      const answer = await call(`${fixture.adminUrl}/healthz`);
      assert.equal(answer.status, 503);
      assert.equal((answer.json as { status?: string }).status, 'failing');
    } finally {
      fixture.sink.broken = false;
    }
    assert.equal((await call(`${fixture.adminUrl}/healthz`)).status, 200);
  });

  it('is not ready while the audit spool is full, and requests are refused meanwhile', async () => {
    fixture.sink.full = true;
    try {
      const answer = await call(`${fixture.adminUrl}/readyz`);
      assert.equal(answer.status, 503);
      assert.deepEqual(answer.json, {
        status: 'not ready',
        reason: 'the audit spool is full or failing; requests are refused',
      });
      assert.equal((await embed()).status, 503);
    } finally {
      fixture.sink.full = false;
    }
    assert.equal((await call(`${fixture.adminUrl}/readyz`)).status, 200);
  });

  it('is ready with the policy it enforces', async () => {
    const answer = await call(`${fixture.adminUrl}/readyz`);
    assert.equal(answer.status, 200);
    assert.deepEqual(answer.json, {
      status: 'ready',
      policy: { name: 'test', hash: policyHash(basePolicy) },
    });
  });

  it('counts requests by API and outcome in Prometheus text', async () => {
    const before = (await call(`${fixture.adminUrl}/metrics`)).text;
    await embed();
    await embed();
    await call(`${fixture.url}/v1/embeddings`, { model: 'm', input: 'x' });
    const answer = await call(`${fixture.adminUrl}/metrics`);
    assert.equal(answer.status, 200);
    assert.match(String(answer.headers['content-type']), /^text\/plain/);
    assert.match(answer.text, /# TYPE veil_requests_total counter/);
    assert.equal(
      requestsCounted(answer.text, 'openai', 'allowed') - requestsCounted(before, 'openai', 'allowed'),
      2,
    );
    assert.equal(
      requestsCounted(answer.text, 'openai', 'unauthenticated') -
        requestsCounted(before, 'openai', 'unauthenticated'),
      1,
    );
  });

  it('counts a request its record failed as what the caller got: unavailable, not its outcome', async () => {
    const before = (await call(`${fixture.adminUrl}/metrics`)).text;
    fixture.sink.failWhen = (draft) => draft.outcome === 'allowed';
    try {
      assert.equal((await embed()).status, 503);
    } finally {
      fixture.sink.failWhen = undefined;
    }
    const after = (await call(`${fixture.adminUrl}/metrics`)).text;
    const counted = (outcome: string) =>
      requestsCounted(after, 'openai', outcome) - requestsCounted(before, 'openai', outcome);
    assert.equal(counted('allowed'), 0);
    assert.equal(counted('unavailable'), 1);
  });

  it('ACKs a controller push with the hash and enforces its masking on the next request', async () => {
    const next: PolicySpec = {
      ...basePolicy,
      masking: {
        rules: [
          {
            name: 'emails',
            detectors: ['email'],
            patterns: [],
            operator: 'redact',
            scopes: ['forward'],
            responseFields: [],
          },
        ],
      },
    };
    const pushed = { name: 'test', spec: next };
    const answer = await push(pushed, await pushToken(controller, pushed));
    assert.equal(answer.status, 200, answer.text);
    assert.deepEqual(answer.json, { status: 'ack', hash: policyHash(next) });

    const before = fixture.upstreamCalls.length;
    assert.equal((await embed()).status, 200);
    assert.equal(fixture.upstreamCalls.length, before + 1);
    assert.ok(!JSON.stringify(fixture.upstreamCalls.at(-1)).includes(EMAIL), 'the model never sees it');
    assert.deepEqual(fixture.records().at(-1)?.policy, { name: 'test', hash: policyHash(next) });
    const ready = await call(`${fixture.adminUrl}/readyz`);
    assert.deepEqual((ready.json as { policy: unknown }).policy, { name: 'test', hash: policyHash(next) });
    const current = await call(`${fixture.adminUrl}/v1/policy`);
    assert.deepEqual(current.json, { name: 'test', hash: policyHash(next) });
  });

  it('NACKs a bad policy with 422 and the reason, the last good policy still enforced', async () => {
    const hashBefore = fixture.sidecar.store.current()?.hash;
    const broken = { name: 'test', spec: { ...basePolicy, limits: { maxInputsPerRequest: 0 } } };
    const answer = await push(broken, await pushToken(controller, broken));
    assert.equal(answer.status, 422);
    assert.equal((answer.json as { status: string }).status, 'nack');
    assert.match((answer.json as { reason: string }).reason, /limits\.maxInputsPerRequest/);
    assert.equal(fixture.sidecar.store.current()?.hash, hashBefore);

    assert.equal((await embed()).status, 200);
    assert.ok(!JSON.stringify(fixture.upstreamCalls.at(-1)).includes(EMAIL), 'masking still on');
  });

  it('NACKs with 422 a policy other than the one this sidecar was configured with', async () => {
    const hashBefore = fixture.sidecar.store.current()?.hash;
    const other = { name: 'other-team', spec: basePolicy };
    const answer = await push(other, await pushToken(controller, other));
    assert.equal(answer.status, 422, answer.text);
    assert.deepEqual(answer.json, {
      status: 'nack',
      reason: 'this sidecar enforces policy test, not other-team',
    });
    assert.equal(fixture.sidecar.store.current()?.hash, hashBefore);
  });

  it('NACKs a body that is not {name, spec} with 400', async () => {
    const answer = await push(
      { spec: basePolicy },
      await pushToken(controller, { name: 'x', spec: basePolicy }),
    );
    assert.equal(answer.status, 400);
  });

  it('refuses with 401 a push signed by another key, for another pod, or unsigned, with a Bearer challenge', async () => {
    const hashBefore = fixture.sidecar.store.current()?.hash;
    const open = { name: 'takeover', spec: basePolicy };
    const attempts = [
      await pushToken(impostor, open),
      await pushToken(controller, open, sidecarAudience('another-pod')),
      undefined,
    ];
    for (const bearer of attempts) {
      const answer = await push(open, bearer);
      assert.equal(answer.status, 401);
      assert.deepEqual(answer.json, { status: 'nack', reason: 'push not signed by the controller' });
      // As the data port's: RFC 6750 gives no error code to a request without a token.
      assert.equal(answer.headers['www-authenticate'], bearer ? invalidToken : 'Bearer');
    }
    assert.equal(fixture.sidecar.store.current()?.hash, hashBefore);
  });

  it('refuses an unauthenticated push or revocation before reading its body, however large', async () => {
    const tls = fixture.adminTls;
    assert.ok(tls);
    // Not JSON: parsed, it would be a 400; refused first, it is never parsed.
    const junk = 'x'.repeat(3 * 1024 * 1024);
    const forged = await pushToken(impostor, { name: 'test', spec: basePolicy });
    for (const method of ['PUT', 'DELETE']) {
      for (const bearer of [undefined, forged]) {
        const answer = await call(`${tls.url}/v1/policy`, junk, {
          method,
          token: bearer,
          dispatcher: tls.dispatcher,
        });
        assert.equal(answer.status, 401, `${method}: ${answer.text}`);
        assert.deepEqual(answer.json, { status: 'nack', reason: 'push not signed by the controller' });
      }
      const plain = await call(`${fixture.adminUrl}/v1/policy`, junk, { method, token: forged });
      assert.equal(plain.status, 403, `${method}: ${plain.text}`);
      assert.deepEqual(plain.json, { status: 'nack', reason: 'pushes must use HTTPS' });
    }
  });

  it('refuses a token already used, even with the body it was signed for: an older policy stays out', async () => {
    const older = version(1000);
    const olderToken = await pushToken(controller, older);
    assert.equal((await push(older, olderToken)).status, 200);
    const newer = version(2000);
    assert.equal((await push(newer, await pushToken(controller, newer))).status, 200);

    const replayed = await push(older, olderToken);
    assert.equal(replayed.status, 401);
    assert.deepEqual(replayed.json, { status: 'nack', reason: 'push token already used' });
    assert.equal(replayed.headers['www-authenticate'], invalidToken);
    assert.equal(fixture.sidecar.store.current()?.hash, policyClaim(newer).hash);
  });

  it('refuses a token on a body other than the one it names: an issuer of their own stays out', async () => {
    const attacker: TestIssuer = await startTestIssuer();
    try {
      const before = fixture.sidecar.store.current();
      const signedFor = { name: 'legit', spec: basePolicy };
      const swaps = [
        { name: 'legit', spec: testPolicy([attacker]) },
        { name: 'renamed', spec: basePolicy },
      ];
      for (const swapped of swaps) {
        const answer = await push(swapped, await pushToken(controller, signedFor));
        assert.equal(answer.status, 401, answer.text);
        assert.deepEqual(answer.json, {
          status: 'nack',
          reason: 'the policy is not the one its push token names',
        });
        assert.equal(answer.headers['www-authenticate'], invalidToken);
      }
      // The token captured on its way is spent too: the body it names cannot follow it.
      const captured = await pushToken(controller, signedFor);
      assert.equal((await push(swaps[0], captured)).status, 401);
      assert.equal((await push(signedFor, captured)).status, 401);

      assert.equal(fixture.sidecar.store.current(), before, 'the old policy stays in force');
      const intruder = await attacker.mint({ sub: 'mallory', aud: AUDIENCE, groups: [TEAM] });
      assert.equal(
        (await call(`${fixture.url}/v1/embeddings`, { model: 'm', input: 'x' }, { token: intruder })).status,
        401,
      );
      assert.equal((await embed()).status, 200);
    } finally {
      await attacker.stop();
    }
  });

  it('refuses a token without a jti or without the policy claim', async () => {
    const before = fixture.sidecar.store.current();
    const body = { name: 'unbound', spec: basePolicy };
    const tokens = [
      await signedToken(controller, {}),
      await signedToken(controller, { jti: randomUUID() }),
      await signedToken(controller, { policy: policyClaim(body) }),
    ];
    for (const bearer of tokens) {
      const answer = await push(body, bearer);
      assert.equal(answer.status, 401);
      assert.deepEqual(answer.json, {
        status: 'nack',
        reason: 'the push token must carry a jti and the policy it authorises',
      });
      assert.equal(answer.headers['www-authenticate'], invalidToken);
    }
    assert.equal(fixture.sidecar.store.current(), before);
  });

  it('takes a push from a controller whose clock runs a few seconds ahead, not a minute ahead', async () => {
    const mint = (aheadSeconds: number) => {
      const iat = Math.floor(Date.now() / 1000) + aheadSeconds;
      return new SignJWT({ jti: randomUUID(), policy: policyClaim({ name: 'test', spec: basePolicy }) })
        .setProtectedHeader({ alg: 'EdDSA' })
        .setIssuer(CONTROLLER_ISSUER)
        .setAudience(sidecarAudience(POD_UID))
        .setIssuedAt(iat)
        .setExpirationTime(iat + 60)
        .sign(controller);
    };
    assert.equal((await push({ name: 'test', spec: basePolicy }, await mint(10))).status, 200);
    assert.equal((await push({ name: 'test', spec: basePolicy }, await mint(60))).status, 401);
  });

  it('takes a rotated controller key from its file without a restart, and then only that key', async () => {
    const keyFile = join(fixture.stateDir, 'controller.jwk');
    const original = await readFile(keyFile, 'utf8');
    const next = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    try {
      // As the kubelet updates a mounted ConfigMap: the new content replaces the old at once.
      await writeFile(
        `${keyFile}.new`,
        JSON.stringify({ ...(await exportJWK(next.publicKey)), alg: 'EdDSA' }),
      );
      await rename(`${keyFile}.new`, keyFile);
      const byOld = await push(version(3000), await pushToken(controller, version(3000)));
      assert.equal(byOld.status, 401);
      const byNew = await push(version(4000), await pushToken(next.privateKey, version(4000)));
      assert.equal(byNew.status, 200, byNew.text);
      assert.equal(fixture.sidecar.store.current()?.hash, policyClaim(version(4000)).hash);

      await rm(keyFile);
      const unreadable = await push(version(5000), await pushToken(next.privateKey, version(5000)));
      assert.equal(unreadable.status, 503);
      assert.deepEqual(unreadable.json, {
        status: 'nack',
        reason: "the controller's key file cannot be read",
      });
      assert.equal(fixture.sidecar.store.current()?.hash, policyClaim(version(4000)).hash);
    } finally {
      await writeFile(keyFile, original);
    }
    assert.equal((await push(version(6000), await pushToken(controller, version(6000)))).status, 200);
  });

  it('refuses every push when no controller key is configured', async () => {
    const closed = await startSidecarFixture();
    try {
      const answer = await call(
        `${closed.adminUrl}/v1/policy`,
        { name: 'x', spec: {} },
        { method: 'PUT', token: await pushToken(controller, { name: 'x', spec: {} }) },
      );
      assert.equal(answer.status, 403);
    } finally {
      await closed.close();
    }
  });
});

describe('a restarted sidecar', () => {
  it('still refuses a push token spent before the restart', async () => {
    const pair = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
    const controllerKey = { ...(await exportJWK(pair.privateKey)), alg: 'EdDSA' };
    const stateDir = await mkdtemp(join(tmpdir(), 'veil-restarted-'));
    const start = () => startSidecarFixture({ controllerKey, config: { policyName: 'test', stateDir } });
    const pushTo = (fixture: SidecarFixture, body: Push, bearer: string) => {
      const tls = fixture.adminTls;
      if (tls === undefined) throw new Error('the fixture has no admin certificate');
      return call(`${tls.url}/v1/policy`, body, { method: 'PUT', token: bearer, dispatcher: tls.dispatcher });
    };
    try {
      const first = await start();
      const body: Push = { name: 'test', spec: testPolicy([first.issuer]) };
      const once = await pushToken(pair.privateKey, body);
      try {
        assert.equal((await pushTo(first, body, once)).status, 200);
      } finally {
        await first.close();
      }
      const restarted = await start();
      try {
        const replayed = await pushTo(restarted, body, once);
        assert.equal(replayed.status, 401);
        assert.deepEqual(replayed.json, { status: 'nack', reason: 'push token already used' });
      } finally {
        await restarted.close();
      }
    } finally {
      await rm(stateDir, { recursive: true, force: true });
    }
  });
});
