import type { FastifyInstance } from 'fastify';
import type { PolicyStore } from '../policy/store.ts';

/**
 * Liveness is the process answering; readiness needs a valid policy, since without
 * one it serves nothing, and an audit sink taking records, since without one every
 * request is refused.
 */
export async function healthRoutes(
  app: FastifyInstance,
  options: { store: PolicyStore; recording: () => boolean },
): Promise<void> {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    const policy = options.store.current();
    if (!policy) return reply.code(503).send({ status: 'not ready', reason: 'no valid policy' });
    if (!options.recording()) {
      return reply
        .code(503)
        .send({ status: 'not ready', reason: 'the audit spool is full or failing; requests are refused' });
    }
    return { status: 'ready', policy: { name: policy.name, hash: policy.hash } };
  });
}
