import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readPodOptions } from '../../src/webhook/annotations.ts';
import { injectionSettingsSchema } from '../../src/webhook/settings.ts';
import { testSettings } from './support/settings.ts';

test('settings defaults follow the contract', () => {
  const { s3: _s3, ...minimal } = testSettings;
  const settings = injectionSettingsSchema.parse(minimal);
  assert.equal(settings.nativeSidecars, true);
  assert.equal(settings.proxyPort, 15_080);
  assert.equal(settings.adminPort, 15_090);
  assert.deepEqual(settings.resources, {
    requests: { cpu: '50m', memory: '128Mi' },
    limits: { memory: '256Mi' },
  });
  assert.deepEqual(settings.controllerKey, {
    source: 'configMap',
    name: 'veil-controller-key',
    key: 'jwk.json',
  });
  assert.deepEqual(settings.hashKey, { secretName: 'veil-hash-key', key: 'key' });
  assert.equal(settings.s3, undefined);
});

test('only OTEL_* variables pass to the sidecars, and an evidence prefix only of key-safe characters', () => {
  for (const [change, path] of [
    [{ otelEnv: { AWS_SECRET_ACCESS_KEY: 'x' } }, 'otelEnv.AWS_SECRET_ACCESS_KEY'],
    [{ otelEnv: { otel_traces_exporter: 'otlp' } }, 'otelEnv.otel_traces_exporter'],
    [{ s3: { ...testSettings.s3, prefix: 'team a/' } }, 's3.prefix'],
  ] as const) {
    const parsed = injectionSettingsSchema.safeParse({ ...testSettings, ...change });
    assert.equal(parsed.success, false, JSON.stringify(change));
    assert.equal(parsed.error?.issues[0]?.path.join('.'), path);
  }
});

test('sidecar tuning the sidecar would refuse stops the injector at start, naming the setting', () => {
  for (const [tuning, path] of [
    [{ bodyTimeoutMs: 0 }, 'tuning.bodyTimeoutMs'],
    [{ spoolCapacityBytes: 4096 }, 'tuning.spoolCapacityBytes'],
    [{ upstreamTimeout: 1000 }, 'tuning'],
  ] as const) {
    const parsed = injectionSettingsSchema.safeParse({ ...testSettings, tuning });
    assert.equal(parsed.success, false, JSON.stringify(tuning));
    assert.equal(parsed.error?.issues[0]?.path.join('.'), path);
  }
  assert.deepEqual(injectionSettingsSchema.parse(testSettings).tuning, {});
});

test('settings refuse what would break pods or leak audit traffic', () => {
  const bad = [
    { adminPort: 15_080 },
    { controllerUrl: 'http://veil-controller:8443' },
    { proxyPort: 70_000 },
    { resources: { requests: { memory: '0' } } },
    { cluster: 'Prod Cluster' },
    { hashKey: { secretName: 'Hash_Key' } },
    { hashKey: { key: 'a/b' } },
    { unknownSetting: true },
  ];
  for (const override of bad) {
    assert.equal(
      injectionSettingsSchema.safeParse({ ...testSettings, ...override }).success,
      false,
      JSON.stringify(override),
    );
  }
});

test('a sidecar request above its limit is refused at start, naming both', () => {
  const cases = [
    [
      { requests: { memory: '512Mi' } },
      'requests.memory',
      '(512Mi) must be at most the memory limit (256Mi)',
    ],
    [{ requests: { memory: '1G' }, limits: { memory: '0.5Gi' } }, 'requests.memory', '(1G)'],
    [
      { requests: { cpu: '0.5' }, limits: { cpu: '200m' } },
      'requests.cpu',
      '(0.5) must be at most the CPU limit (200m)',
    ],
  ] as const;
  for (const [resources, path, words] of cases) {
    const parsed = injectionSettingsSchema.safeParse({ ...testSettings, resources });
    assert.equal(parsed.success, false, JSON.stringify(resources));
    const issue = parsed.error?.issues[0];
    assert.equal(issue?.path.join('.'), `resources.${path}`);
    assert.ok(issue?.message.includes(words), issue?.message);
  }
  const fine = [
    { requests: { memory: '256Mi' } },
    { requests: { memory: '1Gi' }, limits: { memory: '1.5Gi' } },
    { requests: { cpu: '1' }, limits: { cpu: '1000m' } },
    { requests: { cpu: '4' } },
  ];
  for (const resources of fine) {
    assert.equal(injectionSettingsSchema.safeParse({ ...testSettings, resources }).success, true);
  }
});

test('an S3 endpoint is http or https without user information: it is published in every pod', () => {
  for (const endpoint of ['https://minio:hunter2@minio.veil-system.svc:9000', 'http://key@10.0.0.5:9000']) {
    const parsed = injectionSettingsSchema.safeParse({
      ...testSettings,
      s3: { ...testSettings.s3, endpoint },
    });
    assert.equal(parsed.success, false, endpoint);
    const issue = parsed.error?.issues[0];
    assert.equal(issue?.path.join('.'), 's3.endpoint');
    assert.match(issue?.message ?? '', /must not carry user information/);
    assert.doesNotMatch(issue?.message ?? '', /hunter2|key@/);
  }
  const ftp = injectionSettingsSchema.safeParse({
    ...testSettings,
    s3: { ...testSettings.s3, endpoint: 'ftp://s3.example.com' },
  });
  assert.equal(ftp.error?.issues[0]?.path.join('.'), 's3.endpoint');
  const kind = { ...testSettings.s3, endpoint: 'http://minio.veil-system.svc:9000' };
  assert.equal(injectionSettingsSchema.parse({ ...testSettings, s3: kind }).s3?.endpoint, kind.endpoint);
});

test('the settings refuse what the sidecar would refuse in its environment', () => {
  for (const [change, path] of [
    [{ controllerUrl: 'https://user:secret@veil-injector.veil-system.svc:8444' }, 'controllerUrl'],
    [{ approvalsUrl: 'https://localhost@evil.example:8445' }, 'approvalsUrl'],
    [{ s3: { ...testSettings.s3, prefix: 'team-a/../team-b/' } }, 's3.prefix'],
    [{ s3: { ...testSettings.s3, region: ' ' } }, 's3.region'],
  ] as const) {
    const parsed = injectionSettingsSchema.safeParse({ ...testSettings, ...change });
    assert.equal(parsed.success, false, JSON.stringify(change));
    assert.equal(parsed.error?.issues[0]?.path.join('.'), path);
  }
});

test('request bodies held at or above the sidecar memory limit stop the injector at start, naming both', () => {
  for (const [bodyMemoryBytes, limit] of [
    [256 * 1024 * 1024, '256Mi'],
    [100_000_000, '64Mi'],
  ] as const) {
    const parsed = injectionSettingsSchema.safeParse({
      ...testSettings,
      resources: { requests: { memory: '64Mi' }, limits: { memory: limit } },
      tuning: { bodyMemoryBytes },
    });
    assert.equal(parsed.success, false, `${bodyMemoryBytes} under ${limit}`);
    const issue = parsed.error?.issues[0];
    assert.equal(issue?.path.join('.'), 'tuning.bodyMemoryBytes');
    assert.ok(
      issue?.message.includes(`(${bodyMemoryBytes}) must be below resources.limits.memory (${limit})`),
      issue?.message,
    );
  }
  const fits = injectionSettingsSchema.parse({
    ...testSettings,
    tuning: { bodyMemoryBytes: 64 * 1024 * 1024 },
  });
  assert.equal(fits.tuning.bodyMemoryBytes, 64 * 1024 * 1024);
});

test('a sidecar memory below 64Mi, such as a number meant in MiB, is refused in the settings', () => {
  for (const memory of ['128', '0.5', '63Mi', '64k']) {
    const parsed = injectionSettingsSchema.safeParse({
      ...testSettings,
      resources: { requests: { memory }, limits: { memory } },
    });
    assert.equal(parsed.success, false, memory);
    assert.match(
      parsed.error?.issues[0]?.message ?? '',
      /must be at least 64Mi \(a number without a unit is bytes\)/,
    );
  }
  const least = { requests: { memory: '64Mi' }, limits: { memory: '67108864' } };
  assert.equal(injectionSettingsSchema.safeParse({ ...testSettings, resources: least }).success, true);
});

function optionsOf(annotations: Record<string, string>) {
  return readPodOptions({ metadata: { annotations } });
}

test('pod options default to the contract', () => {
  assert.deepEqual(optionsOf({}), {
    ok: true,
    value: {
      policy: 'default',
      upstreamPort: undefined,
      api: 'auto',
      sidecarCpu: undefined,
      sidecarMemory: undefined,
    },
  });
});

test('the upstream port may be a number or a name', () => {
  const byNumber = optionsOf({ 'veil.dev/upstream-port': '8080' });
  const byName = optionsOf({ 'veil.dev/upstream-port': 'http' });
  assert.equal(byNumber.ok && byNumber.value.upstreamPort, 8080);
  assert.equal(byName.ok && byName.value.upstreamPort, 'http');
});

test('quantities are checked', () => {
  for (const cpu of ['100m', '0.5', '2', '.25']) {
    assert.equal(optionsOf({ 'veil.dev/sidecar-cpu': cpu }).ok, true, cpu);
  }
  for (const cpu of ['0', '0m', '1.5m', '-1', '1e3', 'lots', '']) {
    assert.equal(optionsOf({ 'veil.dev/sidecar-cpu': cpu }).ok, false, cpu);
  }
  for (const memory of ['128Mi', '1Gi', '1.5Gi', '500M', '134217728']) {
    assert.equal(optionsOf({ 'veil.dev/sidecar-memory': memory }).ok, true, memory);
  }
  for (const memory of ['128m', '0Mi', '1 Gi', 'Mi', '-5Mi', '128', '0.5', '63Mi', '1M']) {
    assert.equal(optionsOf({ 'veil.dev/sidecar-memory': memory }).ok, false, memory);
  }
});

test('each bad annotation is named in the message', () => {
  const cases: [string, string][] = [
    ['veil.dev/upstream-port', '70000'],
    ['veil.dev/upstream-port', 'Not_A_Name'],
    ['veil.dev/api', 'OpenAI'],
    ['veil.dev/policy', ''],
    ['veil.dev/sidecar-memory', '1GB'],
  ];
  for (const [key, value] of cases) {
    const result = optionsOf({ [key]: value });
    assert.equal(result.ok, false, `${key}=${value}`);
    assert.ok(!result.ok && result.message.startsWith(`${key}: `), !result.ok ? result.message : '');
  }
});
