import type { FastifyInstance } from 'fastify';
import type { PolicyStore } from '../policy/store.ts';

/** Liveness is the process answering; readiness needs a valid policy, since without one it serves nothing. */
export async function healthRoutes(app: FastifyInstance, options: { store: PolicyStore }): Promise<void> {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    const policy = options.store.current();
    if (!policy) return reply.code(503).send({ status: 'not ready', reason: 'no valid policy' });
    return { status: 'ready', policy: { name: policy.name, hash: policy.hash } };
  });
}
