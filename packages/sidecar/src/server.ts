import Fastify, { type FastifyInstance } from 'fastify';
import { healthRoutes } from './admin/health.ts';
import { metricsRoutes } from './admin/metrics.ts';
import { type PolicyRoutesOptions, policyRoutes } from './admin/policy.ts';
import type { ApiName } from './dialects/index.ts';
import type { PipelineDeps } from './proxy/pipeline.ts';
import { type ProxyRoutesOptions, proxyRoutes, refuseUnroutable } from './proxy/routes.ts';
import type { Telemetry } from './telemetry.ts';

/** The data port: what callers reach. */
export async function buildDataServer(
  deps: PipelineDeps,
  api: ApiName | 'auto',
  telemetry: Telemetry,
): Promise<FastifyInstance> {
  // A request that arrives on a kept-alive connection while the sidecar stops is
  // still served and recorded (its connection then closes): Fastify's own 503
  // would be neither in the caller's dialect nor on record.
  const app = Fastify({
    logger: false,
    keepAliveTimeout: 65_000,
    return503OnClosing: false,
    frameworkErrors: refuseUnroutable(deps, api),
  });
  const options: ProxyRoutesOptions = { deps, api, telemetry };
  await app.register(proxyRoutes, options);
  return app;
}

/** The admin port: probes, metrics and policy pushes; never exposed through the Service. */
export async function buildAdminServer(
  policy: PolicyRoutesOptions,
  telemetry: Telemetry,
  recording: () => boolean,
): Promise<FastifyInstance> {
  const app = Fastify({ logger: false, bodyLimit: 4 * 1024 * 1024 });
  await app.register(healthRoutes, { store: policy.store, recording });
  await app.register(metricsRoutes, { telemetry });
  await app.register(policyRoutes, policy);
  return app;
}
