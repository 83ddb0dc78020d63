// The chart's side of injector settings, rendered by the real helm: what it
// passes the injector, and what it refuses to render.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { injectionSettingsSchema, parseInjectorConfig } from '@veil/injector';
import { one, render } from './support.ts';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'veil-chart-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function env(rendered: Awaited<ReturnType<typeof render>>): Record<string, string> {
  const container = one(rendered.objects, 'Deployment').spec.template.spec.containers[0];
  return Object.fromEntries(
    (container.env as { name: string; value?: string }[])
      .filter((v) => v.value !== undefined)
      .map((v) => [v.name, v.value as string]),
  );
}

test("the API server's OIDC username prefixes reach the injector", async () => {
  const rendered = await render(
    dir,
    { approvals: { requesterUsernamePrefixes: ['oidc:', 'sso:'] } },
    { namespace: 'veil-system' },
  );
  const config = parseInjectorConfig([], { ...env(rendered), VEIL_SIGNING_KEY_FILE: 'key.json' });
  assert.deepEqual(config.approvalRequesterPrefixes, ['oidc:', 'sso:']);
  const defaults = await render(dir, {}, { namespace: 'veil-system' });
  assert.equal(env(defaults).VEIL_APPROVAL_REQUESTER_PREFIXES, '');
});

test('the approvals webhook sees creations too: only the controller opens an approval', async () => {
  const rendered = await render(dir, {}, { namespace: 'veil-system' });
  const webhook = one(rendered.objects, 'MutatingWebhookConfiguration', 'veil-approvals').webhooks[0];
  assert.deepEqual(webhook.rules[0].operations, ['CREATE', 'UPDATE']);
});

test('a sidecar request above its limit fails the render, naming both', async () => {
  await assert.rejects(
    render(dir, { sidecar: { resources: { requests: { memory: '512Mi' } } } }, { namespace: 'veil-system' }),
    /sidecar\.resources\.requests\.memory \(512Mi\) must be at most sidecar\.resources\.limits\.memory \(256Mi\)/,
  );
  await assert.rejects(
    render(
      dir,
      { sidecar: { resources: { requests: { cpu: '0.5' }, limits: { cpu: '200m', memory: '256Mi' } } } },
      { namespace: 'veil-system' },
    ),
    /sidecar\.resources\.requests\.cpu \(0\.5\) must be at most sidecar\.resources\.limits\.cpu \(200m\)/,
  );
  await render(
    dir,
    { sidecar: { resources: { requests: { cpu: '1', memory: '0.25Gi' }, limits: { cpu: '1000m' } } } },
    { namespace: 'veil-system' },
  );
});

test('an injector request above its limit fails the render, naming both', async () => {
  await assert.rejects(
    render(dir, { injector: { resources: { requests: { memory: '512Mi' } } } }, { namespace: 'veil-system' }),
    /injector\.resources\.requests\.memory \(512Mi\) must be at most injector\.resources\.limits\.memory \(384Mi\)/,
  );
  await assert.rejects(
    render(
      dir,
      { injector: { resources: { requests: { cpu: '1' }, limits: { cpu: '500m', memory: '384Mi' } } } },
      { namespace: 'veil-system' },
    ),
    /injector\.resources\.requests\.cpu \(1\) must be at most injector\.resources\.limits\.cpu \(500m\)/,
  );
});

test('a PodDisruptionBudget that would keep every injector replica fails the render', async () => {
  const blocking = [
    { replicas: 1, podDisruptionBudget: { enabled: true, minAvailable: 1 } },
    { replicas: 2, podDisruptionBudget: { enabled: true, minAvailable: 3 } },
    // Rounded up: 51% of 2 replicas is both.
    { replicas: 2, podDisruptionBudget: { enabled: true, minAvailable: '51%' } },
  ];
  for (const injector of blocking) {
    await assert.rejects(
      render(dir, { injector }, { namespace: 'veil-system' }),
      /injector\.podDisruptionBudget\.minAvailable \(\S+\) keeps all \d+ of injector\.replicas available/,
      JSON.stringify(injector),
    );
  }
  const single = await render(
    dir,
    { injector: { replicas: 1, podDisruptionBudget: { enabled: false, minAvailable: 1 } } },
    { namespace: 'veil-system' },
  );
  assert.equal(single.objects.filter((o) => o.kind === 'PodDisruptionBudget').length, 0);
  const half = await render(
    dir,
    { injector: { replicas: 2, podDisruptionBudget: { enabled: true, minAvailable: '50%' } } },
    { namespace: 'veil-system' },
  );
  assert.equal(one(half.objects, 'PodDisruptionBudget').spec.minAvailable, '50%');
});

test("the sidecar's tuning reaches the injector's settings, and none by default", async () => {
  const tuning = { bodyTimeoutMs: 20_000, spoolCapacityBytes: 268_435_456, auditCloseGraceSeconds: 25 };
  const settingsOf = (rendered: Awaited<ReturnType<typeof render>>) =>
    injectionSettingsSchema.parse(
      JSON.parse(one(rendered.objects, 'ConfigMap', 'veil-injector-settings').data['settings.json']),
    );
  const rendered = await render(dir, { sidecar: { tuning } }, { namespace: 'veil-system' });
  assert.deepEqual(settingsOf(rendered).tuning, tuning);
  const defaults = await render(dir, {}, { namespace: 'veil-system' });
  assert.deepEqual(settingsOf(defaults).tuning, {});
});
