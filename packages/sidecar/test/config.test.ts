// The sidecar configuration read from its environment: the controller endpoints it sends its
// service-account token to, and the pod it names its stream and push audience after.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sidecarTuningToEnv } from '@veil/core';
import { configFromEnv } from '../src/config.ts';

const base = { VEIL_UPSTREAM: 'http://127.0.0.1:9000' };

test('controller endpoints are https, or plain http on loopback only', () => {
  for (const url of [
    'https://veil-controller.veil-system.svc:8444',
    'http://127.0.0.1:8444',
    'http://[::1]/',
  ]) {
    assert.equal(configFromEnv({ ...base, VEIL_CONTROLLER_URL: url }).controllerUrl, url);
  }
  assert.throws(() => configFromEnv({ ...base, VEIL_APPROVALS_URL: 'http://10.0.0.5:8445' }), /approvalsUrl/);
  assert.throws(
    () => configFromEnv({ ...base, VEIL_CONTROLLER_URL: 'http://localhost.evil.example' }),
    /controllerUrl/,
  );
});

test('a controller endpoint is judged by the host it names, not a loopback-looking prefix', () => {
  for (const url of ['http://localhost:1@evil.example/', 'http://127.0.0.1:x@10.0.0.5:8444/']) {
    assert.throws(
      () => configFromEnv({ ...base, VEIL_CONTROLLER_URL: url }),
      /controllerUrl: must not carry user information/,
    );
    assert.throws(
      () => configFromEnv({ ...base, VEIL_APPROVALS_URL: url }),
      /approvalsUrl: must be https \(plain http only on loopback\)/,
    );
  }
  assert.throws(
    () => configFromEnv({ ...base, VEIL_CONTROLLER_URL: 'https://user:secret@controller.example' }),
    /user information/,
  );
});

test("the upstream is the model's origin: a path, query or fragment is refused by name, not undici's 'invalid url'", () => {
  for (const url of ['http://127.0.0.1:9000', 'http://127.0.0.1:9000/', 'https://[::1]:9000']) {
    assert.equal(configFromEnv({ VEIL_UPSTREAM: url }).upstream, url);
  }
  for (const url of [
    'http://127.0.0.1:11434/v1',
    'http://127.0.0.1:9000/?model=a',
    'http://127.0.0.1:9000#x',
    'ftp://127.0.0.1:9000',
  ]) {
    assert.throws(() => configFromEnv({ VEIL_UPSTREAM: url }), /upstream: /, url);
  }
  assert.throws(
    () => configFromEnv({ VEIL_UPSTREAM: 'http://127.0.0.1:11434/v1' }),
    /^Error: invalid sidecar configuration: upstream: must be the model's origin \(http:\/\/host:port\), without a path, query or fragment$/,
  );
});

test('the pod comes from all three of its variables, or none: one or two alone is refused', () => {
  assert.deepEqual(configFromEnv(base).pod, { namespace: 'local', name: 'veil-dev', uid: 'local' });
  const pod = { VEIL_POD_NAMESPACE: 'ml', VEIL_POD_NAME: 'embed-0', VEIL_POD_UID: 'uid-1' };
  assert.deepEqual(configFromEnv({ ...base, ...pod }).pod, {
    namespace: 'ml',
    name: 'embed-0',
    uid: 'uid-1',
  });
  assert.throws(
    () => configFromEnv({ ...base, VEIL_POD_NAMESPACE: 'ml', VEIL_POD_NAME: 'embed-0' }),
    /VEIL_POD_UID must be set with the other pod variables/,
  );
});

test('how long a caller may take over a request comes from the environment, in milliseconds', () => {
  const config = configFromEnv({
    ...base,
    VEIL_BODY_IDLE_TIMEOUT_MS: '5000',
    VEIL_BODY_TIMEOUT_MS: '20000',
    VEIL_REQUEST_TIMEOUT_MS: '45000',
  });
  assert.deepEqual(
    [config.bodyIdleTimeoutMs, config.bodyTimeoutMs, config.requestTimeoutMs],
    [5_000, 20_000, 45_000],
  );
  assert.throws(() => configFromEnv({ ...base, VEIL_BODY_IDLE_TIMEOUT_MS: '0' }), /bodyIdleTimeoutMs/);
  assert.throws(() => configFromEnv({ ...base, VEIL_REQUEST_TIMEOUT_MS: 'soon' }), /requestTimeoutMs/);
});

test('the tuning the injector writes is the tuning the sidecar reads', () => {
  const tuning = {
    upstreamTimeoutMs: 90_000,
    bodyIdleTimeoutMs: 5_000,
    bodyTimeoutMs: 20_000,
    requestTimeoutMs: 45_000,
    bodyMemoryBytes: 8 * 1024 * 1024,
    spoolCapacityBytes: 268_435_456,
    auditCloseGraceSeconds: 25,
  };
  const env = Object.fromEntries(sidecarTuningToEnv(tuning).map(({ name, value }) => [name, value]));
  const config = configFromEnv({ ...base, ...env });
  for (const [key, value] of Object.entries(tuning)) {
    assert.equal(config[key as keyof typeof tuning], value, key);
  }
});
