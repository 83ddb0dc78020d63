import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type InjectionSettingsInput, injectionSettingsSchema } from '../../src/webhook/settings.ts';
import { settingsWarnings } from '../../src/webhook/warnings.ts';
import { testSettings } from './support/settings.ts';

const warnings = (overrides: Partial<InjectionSettingsInput>) =>
  settingsWarnings(injectionSettingsSchema.parse({ ...testSettings, ...overrides }));

test('the test settings draw no warning', () => {
  assert.deepEqual(warnings({}), []);
});

test('a close grace that refuses pods leaving their termination grace unset is warned of at start', () => {
  const [warning] = warnings({ tuning: { auditCloseGraceSeconds: 21 } });
  assert.match(warning ?? '', /needs a termination grace of 31 s: opted-in pods that leave/);
  assert.deepEqual(warnings({ tuning: { auditCloseGraceSeconds: 20 } }), []);
});

test('an S3 endpoint host a namespace Service could answer is warned of; a full name, an address or a final dot is not', () => {
  const withEndpoint = (endpoint: string) => warnings({ s3: { bucket: 'evidence', endpoint } });
  for (const host of ['minio', 'minio.storage', 'minio.svc']) {
    const [warning] = withEndpoint(`https://${host}:9000`);
    assert.match(
      warning ?? '',
      new RegExp(`^s3.endpoint host ${host.replace('.', '\\.')} has fewer than three labels`),
    );
  }
  for (const host of [
    'minio.storage.svc',
    'minio.storage.',
    '10.0.0.7',
    '[fd00::7]',
    's3.eu-west-1.amazonaws.com',
  ]) {
    assert.deepEqual(withEndpoint(`https://${host}:9000`), [], host);
  }
});
