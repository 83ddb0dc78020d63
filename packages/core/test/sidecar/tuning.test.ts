import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sidecarTuningFromEnv, sidecarTuningSchema, sidecarTuningToEnv } from '../../src/sidecar/tuning.ts';

const tuning = {
  upstreamTimeoutMs: 90_000,
  bodyIdleTimeoutMs: 5_000,
  bodyTimeoutMs: 20_000,
  requestTimeoutMs: 45_000,
  bodyMemoryBytes: 8 * 1024 * 1024,
  spoolCapacityBytes: 256 * 1024 * 1024,
  auditCloseGraceSeconds: 12.5,
};

test('every setting written into an environment reads back as it was', () => {
  const env = Object.fromEntries(sidecarTuningToEnv(tuning).map(({ name, value }) => [name, value]));
  assert.equal(Object.keys(env).length, Object.keys(tuning).length, 'one variable a setting');
  assert.deepEqual(sidecarTuningSchema.parse(sidecarTuningFromEnv(env)), tuning);
});

test('a setting left out writes no variable, and an empty variable reads as unset', () => {
  assert.deepEqual(sidecarTuningToEnv({ bodyTimeoutMs: 1_000 }), [
    { name: 'VEIL_BODY_TIMEOUT_MS', value: '1000' },
  ]);
  assert.deepEqual(sidecarTuningFromEnv({ VEIL_BODY_TIMEOUT_MS: '', VEIL_UPSTREAM_TIMEOUT_MS: '7' }), {
    upstreamTimeoutMs: '7',
  });
});

test('values the sidecar cannot use are refused, naming the setting', () => {
  const bad: [object, string][] = [
    [{ bodyTimeoutMs: 0 }, 'bodyTimeoutMs'],
    [{ upstreamTimeoutMs: 600_001 }, 'upstreamTimeoutMs'],
    [{ requestTimeoutMs: 1.5 }, 'requestTimeoutMs'],
    [{ spoolCapacityBytes: 1024 }, 'spoolCapacityBytes'],
    [{ auditCloseGraceSeconds: -1 }, 'auditCloseGraceSeconds'],
    [{ bodyIdleTimeoutMs: 'soon' }, 'bodyIdleTimeoutMs'],
    [{ spoolCapacity: 1 }, ''],
  ];
  for (const [value, path] of bad) {
    const parsed = sidecarTuningSchema.safeParse(value);
    assert.equal(parsed.success, false, JSON.stringify(value));
    assert.equal(parsed.error?.issues[0]?.path.join('.'), path, JSON.stringify(value));
  }
});
