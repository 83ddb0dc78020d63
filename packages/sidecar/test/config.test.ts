// The sidecar configuration read from its environment: the controller endpoints it sends its
// service-account token to, and the pod it names its stream and push audience after.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sidecarTuningToEnv } from '@veil/core';
import { configFromEnv, evidenceStoreWarnings } from '../src/config.ts';

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
      /VEIL_CONTROLLER_URL \(controllerUrl\): must not carry user information/,
    );
    assert.throws(
      () => configFromEnv({ ...base, VEIL_APPROVALS_URL: url }),
      /VEIL_APPROVALS_URL \(approvalsUrl\): must be https \(plain http only on loopback\)/,
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
    assert.throws(() => configFromEnv({ VEIL_UPSTREAM: url }), /VEIL_UPSTREAM \(upstream\): /, url);
  }
  assert.throws(
    () => configFromEnv({ VEIL_UPSTREAM: 'http://127.0.0.1:11434/v1' }),
    /^Error: invalid sidecar configuration: VEIL_UPSTREAM \(upstream\): must be the model's origin \(http:\/\/host:port\), without a path, query or fragment$/,
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

test('a bad number is refused under its variable, with the bounds, and never echoed', () => {
  assert.throws(
    () => configFromEnv({ ...base, VEIL_PROXY_PORT: '99999' }),
    /^Error: invalid sidecar configuration: VEIL_PROXY_PORT \(proxyPort\): must be a whole number from 0 to 65535$/,
  );
  assert.throws(
    () => configFromEnv({ ...base, VEIL_SPOOL_CAPACITY_BYTES: '9007199254740991' }),
    /VEIL_SPOOL_CAPACITY_BYTES \(spoolCapacityBytes\): must be a whole number from 65536 to 1099511627776$/,
  );
  assert.throws(
    () => configFromEnv({ ...base, VEIL_AUDIT_CLOSE_GRACE_SECONDS: '1e9' }),
    /^Error: invalid sidecar configuration: VEIL_AUDIT_CLOSE_GRACE_SECONDS \(auditCloseGraceSeconds\): must be a number of seconds from 0 to 3600$/,
  );
});

test('an integer setting is plain decimal digits: hex, exponents, signs and spaces are refused', () => {
  for (const value of ['0x10', '1e3', '+16', '-1', ' 16', '16.0', '1_000']) {
    assert.throws(
      () => configFromEnv({ ...base, VEIL_UPSTREAM_TIMEOUT_MS: value }),
      /VEIL_UPSTREAM_TIMEOUT_MS \(upstreamTimeoutMs\): must be a whole number from 1 to 600000/,
      value,
    );
  }
  assert.throws(() => configFromEnv({ ...base, VEIL_ADMIN_PORT: '0x50' }), /VEIL_ADMIN_PORT/);
  assert.equal(configFromEnv({ ...base, VEIL_UPSTREAM_TIMEOUT_MS: '16' }).upstreamTimeoutMs, 16);
});

test('sizes and durations past what a sidecar can use are refused', () => {
  for (const [variable, value] of [
    ['VEIL_BODY_MEMORY_BYTES', '1000000000000000'],
    ['VEIL_SPOOL_CAPACITY_BYTES', '9007199254740991'],
    ['VEIL_AUDIT_CLOSE_GRACE_SECONDS', '1000000000'],
    ['VEIL_RETENTION_SECONDS', '1000000000000'],
  ] as const) {
    assert.throws(
      () => configFromEnv({ ...base, [variable]: value }),
      new RegExp(`${variable} \\(`),
      variable,
    );
  }
  const largest = configFromEnv({
    ...base,
    VEIL_BODY_MEMORY_BYTES: '1073741824',
    VEIL_SPOOL_CAPACITY_BYTES: '1099511627776',
    VEIL_AUDIT_CLOSE_GRACE_SECONDS: '3600',
    VEIL_RETENTION_SECONDS: '3153600000',
  });
  assert.deepEqual(
    [
      largest.bodyMemoryBytes,
      largest.spoolCapacityBytes,
      largest.auditCloseGraceSeconds,
      largest.retentionSeconds,
    ],
    [1_073_741_824, 1_099_511_627_776, 3_600, 3_153_600_000],
  );
  assert.equal(
    configFromEnv({ ...base, VEIL_AUDIT_CLOSE_GRACE_SECONDS: '12.5' }).auditCloseGraceSeconds,
    12.5,
  );
});

test('a request timeout not above the body timeout is refused, naming both variables', () => {
  assert.throws(
    () => configFromEnv({ ...base, VEIL_REQUEST_TIMEOUT_MS: '1000', VEIL_BODY_TIMEOUT_MS: '30000' }),
    /^Error: invalid sidecar configuration: VEIL_REQUEST_TIMEOUT_MS must be above VEIL_BODY_TIMEOUT_MS: /,
  );
  assert.throws(
    () => configFromEnv({ ...base, VEIL_REQUEST_TIMEOUT_MS: '20000' }),
    /VEIL_REQUEST_TIMEOUT_MS must be above VEIL_BODY_TIMEOUT_MS \(30000 when unset\)/,
  );
  assert.throws(
    () => configFromEnv({ ...base, VEIL_BODY_TIMEOUT_MS: '60000' }),
    /VEIL_REQUEST_TIMEOUT_MS \(60000 when unset\) must be above VEIL_BODY_TIMEOUT_MS/,
  );
  assert.equal(configFromEnv({ ...base, VEIL_BODY_TIMEOUT_MS: '59999' }).bodyTimeoutMs, 59_999);
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

test('an S3 endpoint is http or https without user information, refused by name and never echoed', () => {
  const bucket = { ...base, VEIL_S3_BUCKET: 'veil-evidence' };
  for (const endpoint of ['https://minio:hunter2@s3.example.com', 'http://key@minio.veil-system.svc:9000']) {
    assert.throws(
      () => configFromEnv({ ...bucket, VEIL_S3_ENDPOINT: endpoint }),
      (error: Error) => {
        assert.match(error.message, /VEIL_S3_ENDPOINT \(s3Endpoint\): must not carry user information/);
        assert.doesNotMatch(error.message, /hunter2|key@|minio:/);
        return true;
      },
      endpoint,
    );
  }
  assert.throws(
    () => configFromEnv({ ...bucket, VEIL_S3_ENDPOINT: 'ftp://s3.example.com' }),
    /VEIL_S3_ENDPOINT \(s3Endpoint\): must be an http or https URL/,
  );
  const endpoint = 'http://minio.veil-system.svc:9000';
  assert.equal(configFromEnv({ ...bucket, VEIL_S3_ENDPOINT: endpoint }).s3Endpoint, endpoint);
});

test('plain http to an evidence store off loopback, and a retention override, are warned of at start', () => {
  const bucket = { ...base, VEIL_S3_BUCKET: 'veil-evidence' };
  const [remote] = evidenceStoreWarnings(
    configFromEnv({ ...bucket, VEIL_S3_ENDPOINT: 'http://minio.veil-system.svc:9000' }),
  );
  assert.match(
    remote ?? '',
    /^VEIL_S3_ENDPOINT is plain http to a host off loopback: .*forge the upload acknowledgements/,
  );
  for (const endpoint of ['https://s3.example.com', 'http://127.0.0.1:9000', undefined]) {
    const env = endpoint === undefined ? bucket : { ...bucket, VEIL_S3_ENDPOINT: endpoint };
    assert.deepEqual(evidenceStoreWarnings(configFromEnv(env)), [], String(endpoint));
  }
  const retention = evidenceStoreWarnings(configFromEnv({ ...bucket, VEIL_RETENTION_SECONDS: '60' }));
  assert.equal(retention.length, 1);
  assert.match(retention[0] ?? '', /^VEIL_RETENTION_SECONDS is set: it overrides the policy's retentionDays/);
  // Without a bucket there is no Object Lock to override and no link to S3.
  assert.deepEqual(
    evidenceStoreWarnings(
      configFromEnv({ ...base, VEIL_RETENTION_SECONDS: '60', VEIL_S3_ENDPOINT: 'http://10.0.0.5:9000' }),
    ),
    [],
  );
});

test('the sidecar refuses the evidence and naming settings the injector refuses', () => {
  for (const [variable, value, setting] of [
    ['VEIL_S3_BUCKET', 'Veil_Evidence', 's3Bucket'],
    ['VEIL_S3_BUCKET', 'ab', 's3Bucket'],
    ['VEIL_S3_PREFIX', 'team-a/../team-b/', 's3Prefix'],
    ['VEIL_S3_PREFIX', '..', 's3Prefix'],
    ['VEIL_S3_PREFIX', 'team a/', 's3Prefix'],
    ['VEIL_S3_REGION', ' ', 's3Region'],
    ['VEIL_HOST', '  ', 'host'],
    ['VEIL_ADMIN_HOST', ' ', 'adminHost'],
    ['VEIL_POLICY_NAME', ' ', 'policyName'],
    ['VEIL_DEFAULT_MODEL', '\t', 'defaultModel'],
  ] as const) {
    assert.throws(
      () => configFromEnv({ ...base, [variable]: value }),
      new RegExp(`${variable} \\(${setting}\\): `),
      `${variable}=${JSON.stringify(value)}`,
    );
  }
  const config = configFromEnv({
    ...base,
    VEIL_S3_BUCKET: 'veil.evidence-1',
    VEIL_S3_PREFIX: 'team-a/v..1/',
  });
  assert.deepEqual([config.s3Bucket, config.s3Prefix], ['veil.evidence-1', 'team-a/v..1/']);
});

test('the proxy and admin ports differ, unless both are left to the system (0)', () => {
  assert.throws(
    () => configFromEnv({ ...base, VEIL_PROXY_PORT: '15080', VEIL_ADMIN_PORT: '15080' }),
    /VEIL_ADMIN_PORT \(adminPort\): proxyPort and adminPort must differ/,
  );
  assert.throws(() => configFromEnv({ ...base, VEIL_ADMIN_PORT: '15080' }), /adminPort/);
  const ephemeral = configFromEnv({ ...base, VEIL_PROXY_PORT: '0', VEIL_ADMIN_PORT: '0' });
  assert.deepEqual([ephemeral.proxyPort, ephemeral.adminPort], [0, 0]);
});

test('the admin host comes from VEIL_ADMIN_HOST', () => {
  assert.equal(configFromEnv({ ...base, VEIL_ADMIN_HOST: '127.0.0.1' }).adminHost, '127.0.0.1');
  assert.equal(configFromEnv(base).adminHost, '0.0.0.0');
});
