// Without traces the sidecar runs a bare meter provider, not the Node SDK: its
// metrics still name their service from the standard OTEL_* variables, as the
// SDK's would, so a scrape of many sidecars tells whose they are.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { call, type SidecarFixture, startSidecarFixture } from './fixtures/sidecar.ts';

let fixture: SidecarFixture;

before(async () => {
  delete process.env.OTEL_TRACES_EXPORTER;
  delete process.env.OTEL_SDK_DISABLED;
  process.env.OTEL_SERVICE_NAME = 'embedder-eu';
  process.env.OTEL_RESOURCE_ATTRIBUTES = 'deployment.environment=prod';
  fixture = await startSidecarFixture();
});

after(() => fixture?.close());

test('metrics carry the service name and resource attributes of OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES', async () => {
  const metrics = await call(`${fixture.adminUrl}/metrics`);
  assert.equal(metrics.status, 200);
  const info = /^target_info\{([^}]*)\} 1$/m.exec(metrics.text)?.[1] ?? '';
  assert.match(info, /service_name="embedder-eu"/);
  assert.match(info, /deployment_environment="prod"/);
});
