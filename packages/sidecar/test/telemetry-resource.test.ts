// Without traces the sidecar runs a bare meter provider, not the Node SDK: its
// metrics still name their service from the standard OTEL_* variables, as the
// SDK's would, so a scrape of many sidecars tells whose they are. With traces
// on (the Node SDK, in a process of its own: telemetry starts once a process),
// traces and metrics name it alike.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startCollectorStandIn, startEntryPoint, tracesTo } from './fixtures/entrypoint.ts';
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

test('with traces on, OTEL_RESOURCE_ATTRIBUTES names the service of traces and metrics alike', {
  timeout: 60_000,
}, async () => {
  const collector = await startCollectorStandIn();
  const sidecar = await startEntryPoint({
    ...tracesTo(collector),
    OTEL_RESOURCE_ATTRIBUTES: 'service.name=embedder-eu,deployment.environment=prod',
  });
  try {
    const { url, adminUrl } = await sidecar.serving;
    assert.equal((await call(`${url}/v1/embeddings`, { model: 'm', input: 'x' })).status, 401);
    const info = /^target_info\{([^}]*)\} 1$/m.exec((await call(`${adminUrl}/metrics`)).text)?.[1] ?? '';
    assert.match(info, /service_name="embedder-eu"/);
    assert.match(info, /deployment_environment="prod"/);
    sidecar.child.kill('SIGTERM');
    await sidecar.exited;
    const span = collector.spans().find((exported) => exported.name === 'veil.auth');
    assert.equal(span?.resource['service.name'], 'embedder-eu', sidecar.output());
    assert.equal(span?.resource['deployment.environment'], 'prod');
  } finally {
    await sidecar.close();
    await collector.close();
  }
});
