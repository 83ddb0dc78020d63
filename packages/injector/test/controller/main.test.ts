import assert from 'node:assert/strict';
import { test } from 'node:test';
import { approvalSpec, now } from '../../../core/test/support/approvals.ts';
import { approvalStampSettings, parseInjectorConfig } from '../../src/main.ts';
import { reviewApprovalAdmission } from '../../src/webhook/approvals.ts';
import { approvalByUser } from '../webhook/support/approvals.ts';

const required = {
  VEIL_SETTINGS_FILE: 'settings.json',
  VEIL_TLS_CERT_FILE: 'tls.crt',
  VEIL_TLS_KEY_FILE: 'tls.key',
  VEIL_SIGNING_KEY_FILE: 'key.json',
};

test('the environment configures the injector, flags override it, defaults fill in', () => {
  const config = parseInjectorConfig(['--lease-duration', '30', '--namespaces', 'ml, search'], {
    ...required,
    VEIL_POD_NAME: 'veil-injector-0',
    VEIL_LEASE_DURATION_SECONDS: '20',
  });
  assert.equal(config.identity, 'veil-injector-0');
  assert.equal(config.leaseDurationSeconds, 30);
  assert.equal(config.leaseRenewSeconds, 5);
  assert.deepEqual(config.namespaces, ['ml', 'search']);
  assert.equal(config.webhookPort, 8443);
  assert.equal(config.pullPort, 8444);
  assert.equal(config.pushDebounceMs, 100);
  assert.equal(config.pushMaxDebounceMs, 1000);
  const slower = parseInjectorConfig(['--push-max-debounce-ms', '5000'], {
    ...required,
    VEIL_PUSH_DEBOUNCE_MS: '1000',
  });
  assert.deepEqual([slower.pushDebounceMs, slower.pushMaxDebounceMs], [1000, 5000]);
});

test('a bad configuration names the flag and variable at fault', () => {
  assert.throws(
    () => parseInjectorConfig(['--lease-duration', '4', '--lease-renew', '3'], required),
    /--lease-renew \(VEIL_LEASE_RENEW_SECONDS\): the renew interval is at most half the lease duration/,
  );
  assert.throws(() => parseInjectorConfig([], {}), /--settings \(VEIL_SETTINGS_FILE\)/);
  assert.throws(() => parseInjectorConfig(['--webhook-port', 'http'], required), /--webhook-port/);
  assert.throws(() => parseInjectorConfig(['--no-such-flag', 'x'], required), /no-such-flag/);
  assert.throws(
    () => parseInjectorConfig(['--certs-renew-fraction', '0.75'], required),
    /--certs-renew-fraction \(VEIL_CERTS_RENEW_FRACTION\): at most 0\.5/,
  );
  assert.equal(parseInjectorConfig(['--certs-renew-fraction', '0.5'], required).certsRenewFraction, 0.5);
});

test("every timer value fits Node's 32-bit timers: longer would fire at once", () => {
  for (const [args, flag] of [
    [['--lease-duration', '2147484'], 'lease-duration'],
    [['--lease-duration', '4000000', '--lease-renew', '1073742'], 'lease-renew'],
    [['--lease-renew', '0.05'], 'lease-renew'],
    [['--resync', '86401'], 'resync'],
    [['--certs-check', '86401'], 'certs-check'],
    [['--push-debounce-ms', '600001'], 'push-debounce-ms'],
    [['--push-max-debounce-ms', '2147483648'], 'push-max-debounce-ms'],
  ] as const) {
    assert.throws(
      () => parseInjectorConfig([...args], required),
      new RegExp(`--${flag} \\(`),
      args.join(' '),
    );
  }
  const longest = parseInjectorConfig(
    [
      ...['--lease-duration', '2147483', '--lease-renew', '1073741.5', '--resync', '86400'],
      ...['--certs-check', '86400', '--push-debounce-ms', '600000', '--push-max-debounce-ms', '600000'],
    ],
    required,
  );
  assert.ok(longest.leaseDurationSeconds * 1000 < 2 ** 31);
  assert.equal(longest.leaseRenewSeconds, 1_073_741.5);
  assert.equal(parseInjectorConfig(['--lease-renew', '0.1'], required).leaseRenewSeconds, 0.1);
});

test('numbers are plain decimal digits and names are not blank: a typo is not a random port', () => {
  for (const [flag, value] of [
    ['webhook-port', ''],
    ['webhook-port', ' '],
    ['pull-port', '0x50'],
    ['approvals-port', '1e3'],
    ['lease-duration', '0x10'],
    ['push-debounce-ms', ''],
    ['host', ' '],
    ['identity', ' '],
    ['lease-name', ' '],
    ['lease-name', 'Veil_Lease'],
    ['namespaces', 'ml, Search'],
    ['certs-secret', 'a b'],
  ] as const) {
    assert.throws(
      () => parseInjectorConfig([`--${flag}=${value}`], { ...required, VEIL_APPROVAL_CONTROLLERS: 'ctl' }),
      new RegExp(`--${flag} \\(`),
      `--${flag}=${JSON.stringify(value)}`,
    );
  }
});

test('two servers on one fixed port are refused, naming each; 0 leaves each its own free port', () => {
  const env = { ...required, VEIL_APPROVAL_CONTROLLERS: 'ctl' };
  assert.throws(
    () => parseInjectorConfig(['--pull-port', '8443'], env),
    /--webhook-port \(VEIL_WEBHOOK_PORT\): must differ from the other ports; --pull-port \(VEIL_PULL_PORT\): must differ/,
  );
  assert.throws(() => parseInjectorConfig(['--approvals-port', '8444'], env), /--approvals-port \(/);
  const free = parseInjectorConfig(['--webhook-port=0', '--pull-port=0', '--approvals-port=0'], env);
  assert.deepEqual([free.webhookPort, free.pullPort, free.approvalsPort], [0, 0, 0]);
});

test('an approvals API without approval controllers is refused at start, naming both settings', () => {
  assert.throws(
    () => parseInjectorConfig(['--approvals-port', '8445'], required),
    /--approvals-port \(VEIL_APPROVALS_PORT\): the approvals API needs --approval-controllers \(VEIL_APPROVAL_CONTROLLERS\)/,
  );
  const config = parseInjectorConfig(['--approvals-port', '8445'], {
    ...required,
    VEIL_APPROVAL_CONTROLLERS: 'system:serviceaccount:veil-system:veil-injector',
  });
  assert.equal(config.approvalsPort, 8445);
});

test('settled approvals are kept unless a retention in days is set', () => {
  assert.equal(parseInjectorConfig([], required).approvalRetentionDays, 0);
  assert.equal(
    parseInjectorConfig([], { ...required, VEIL_APPROVAL_RETENTION_DAYS: '30' }).approvalRetentionDays,
    30,
  );
  assert.throws(
    () => parseInjectorConfig(['--approval-retention-days=-1'], required),
    /--approval-retention-days \(VEIL_APPROVAL_RETENTION_DAYS\)/,
  );
});

test('OIDC username prefixes reach the approvals webhook, so a prefixed requester cannot decide', () => {
  const config = parseInjectorConfig(['--approval-requester-prefixes', 'oidc:, sso:'], {
    ...required,
    VEIL_APPROVAL_CONTROLLERS: 'system:serviceaccount:veil-system:veil-injector',
  });
  const settings = approvalStampSettings(config);
  assert.deepEqual(settings.requesterUsernamePrefixes, ['oidc:', 'sso:']);
  const review = reviewApprovalAdmission(
    approvalByUser(`oidc:${approvalSpec().requester.subject}`),
    settings,
    now,
  );
  assert.equal(review.review.response.allowed, false);
  assert.match(review.review.response.status?.message ?? '', /cannot decide on their own request/);
  assert.deepEqual(approvalStampSettings(parseInjectorConfig([], required)).requesterUsernamePrefixes, []);
});
