import { createServer } from 'node:http';
import type { SecureContext } from 'node:tls';
import { DEFAULT_BODY_TIMEOUT_MS, DEFAULT_REQUEST_TIMEOUT_MS } from '@veil/core';
import Fastify, { type FastifyInstance } from 'fastify';
import { healthRoutes, type RecordingHealth } from './admin/health.ts';
import { acceptTls } from './admin/listener.ts';
import { metricsRoutes } from './admin/metrics.ts';
import { type PolicyRoutesOptions, policyRoutes } from './admin/policy.ts';
import type { SidecarConfig } from './config.ts';
import type { ApiName } from './dialects/index.ts';
import { timedRequests } from './proxy/body.ts';
import type { PipelineDeps } from './proxy/pipeline.ts';
import {
  type ProxyRoutesOptions,
  proxyRoutes,
  refuseConnect,
  refuseMalformed,
  refuseUnroutable,
} from './proxy/routes.ts';
import type { Telemetry } from './telemetry.ts';

/** How long a caller may take to send its request (config.ts says what each is). */
export type RequestTimeouts = Partial<
  Pick<SidecarConfig, 'bodyIdleTimeoutMs' | 'bodyTimeoutMs' | 'requestTimeoutMs'>
>;

/** The data port: what callers reach. */
export async function buildDataServer(
  deps: PipelineDeps,
  api: ApiName | 'auto',
  telemetry: Telemetry,
  timeouts: RequestTimeouts = {},
): Promise<FastifyInstance> {
  const requestTimeout = timeouts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  // A request that arrives on a kept-alive connection while the sidecar stops is
  // still served and recorded (its connection then closes): Fastify's own 503
  // would be neither in the caller's dialect nor on record. So would Node's own
  // 400 to a request without Host: the routes refuse it themselves.
  const app = Fastify({
    logger: false,
    keepAliveTimeout: 65_000,
    requestTimeout,
    http: {
      IncomingMessage: timedRequests({
        idleMs: timeouts.bodyIdleTimeoutMs ?? 10_000,
        totalMs: timeouts.bodyTimeoutMs ?? DEFAULT_BODY_TIMEOUT_MS,
      }),
      requireHostHeader: false,
      // Node takes the smaller of the two for the head and the larger for the
      // whole request: a head timeout above the request timeout would turn it.
      headersTimeout: Math.min(requestTimeout, 60_000),
      // Node looks for requests past their time every 30 s by default, half
      // the default timeout again: a quarter of it keeps the overrun small.
      connectionsCheckingInterval: Math.min(Math.ceil(requestTimeout / 4), 30_000),
    },
    return503OnClosing: false,
    frameworkErrors: refuseUnroutable(deps, api),
    clientErrorHandler: refuseMalformed(deps, api),
  });
  app.server.on('connect', refuseConnect(deps, api));
  // Node answers an expectation other than 100-continue 417 itself, unrecorded;
  // RFC 9110 lets a server ignore it instead, so the request is served as if
  // it had none.
  app.server.on('checkExpectation', (request, response) => app.routing(request, response));
  const options: ProxyRoutesOptions = { deps, api, telemetry };
  await app.register(proxyRoutes, options);
  return app;
}

/**
 * The admin port: probes, metrics and policy pushes; never exposed through the
 * Service. Plain HTTP and TLS on the same port, TLS with `tlsContext()`.
 */
export async function buildAdminServer(
  policy: PolicyRoutesOptions,
  telemetry: Telemetry,
  recording: RecordingHealth,
  tlsContext: () => SecureContext | undefined,
): Promise<FastifyInstance> {
  const app = Fastify({
    logger: false,
    bodyLimit: 4 * 1024 * 1024,
    serverFactory: (handler) => {
      const server = createServer(handler);
      acceptTls(server, tlsContext);
      return server;
    },
  });
  await app.register(healthRoutes, { store: policy.store, recording });
  await app.register(metricsRoutes, { telemetry });
  await app.register(policyRoutes, policy);
  return app;
}
