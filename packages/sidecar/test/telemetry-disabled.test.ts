// OTEL_SDK_DISABLED turns the OpenTelemetry SDK off, traces included, but the
// sidecar's own metrics stay on its admin port: operators alert on them.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { call, type SidecarFixture, startSidecarFixture } from './fixtures/sidecar.ts';

let fixture: SidecarFixture;

before(async () => {
  process.env.OTEL_SDK_DISABLED = 'true';
  process.env.OTEL_TRACES_EXPORTER = 'otlp';
  fixture = await startSidecarFixture();
});

after(() => fixture?.close());

test('with the SDK disabled, /metrics still serves the request counts and gauges', async () => {
  const token = await fixture.token();
  assert.equal(
    (await call(`${fixture.url}/v1/embeddings`, { model: 'm', input: 'hello' }, { token })).status,
    200,
  );
  const metrics = await call(`${fixture.adminUrl}/metrics`);
  assert.equal(metrics.status, 200);
  assert.match(metrics.text, /^veil_requests_total\{[^}]*outcome="allowed"[^}]*\} 1$/m);
  assert.match(metrics.text, /^veil_shared_hash_key\{[^}]*\} 0$/m);
});
