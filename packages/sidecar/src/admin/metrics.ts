import type { FastifyInstance } from 'fastify';
import type { Telemetry } from '../telemetry.ts';

export async function metricsRoutes(app: FastifyInstance, options: { telemetry: Telemetry }): Promise<void> {
  app.get('/metrics', (request, reply) => {
    reply.hijack();
    options.telemetry.serveMetrics(request.raw, reply.raw);
  });
}
