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
    [{ upstreamTimeoutMs: '0x10' }, 'upstreamTimeoutMs'],
    [{ bodyMemoryBytes: '1e15' }, 'bodyMemoryBytes'],
    [{ bodyMemoryBytes: 2 ** 30 + 1 }, 'bodyMemoryBytes'],
    [{ spoolCapacityBytes: Number.MAX_SAFE_INTEGER }, 'spoolCapacityBytes'],
    [{ auditCloseGraceSeconds: 3_600.5 }, 'auditCloseGraceSeconds'],
    [{ auditCloseGraceSeconds: '1e9' }, 'auditCloseGraceSeconds'],
  ];
  for (const [value, path] of bad) {
    const parsed = sidecarTuningSchema.safeParse(value);
    assert.equal(parsed.success, false, JSON.stringify(value));
    assert.equal(parsed.error?.issues[0]?.path.join('.'), path, JSON.stringify(value));
  }
});

test('the request timeout must stay above the body timeout, the defaults counted', () => {
  for (const value of [
    { requestTimeoutMs: 1_000, bodyTimeoutMs: 30_000 },
    { requestTimeoutMs: 30_000, bodyTimeoutMs: 30_000 },
    { requestTimeoutMs: 20_000 },
    { bodyTimeoutMs: 90_000 },
  ]) {
    const parsed = sidecarTuningSchema.safeParse(value);
    assert.equal(parsed.success, false, JSON.stringify(value));
    assert.match(
      parsed.error?.issues[0]?.message ?? '',
      /^requestTimeoutMs( \(60000 when unset\))? must be above bodyTimeoutMs( \(30000 when unset\))?: /,
    );
  }
  assert.equal(
    sidecarTuningSchema.safeParse({ requestTimeoutMs: 30_001, bodyTimeoutMs: 30_000 }).success,
    true,
  );
});
