import type { FastifyInstance } from 'fastify';
import type { AuditSink } from '../audit/sink.ts';
import type { PolicyStore } from '../policy/store.ts';

/** What the probes read of the audit sink, and of the sidecar's own stopping. */
export type RecordingHealth = Pick<AuditSink, 'accepting' | 'failed'> & {
  /** Aborted once the sidecar starts closing. */
  readonly stopping?: AbortSignal;
};

/**
 * Liveness is the process answering with a sink that can still record: after a
 * failed spool write the sidecar refuses every request until it restarts, so the
 * kubelet is asked to restart it, and the next process recovers the spool.
 * Readiness needs a valid policy, since without one it serves nothing, and an
 * audit sink taking records, since without one every request is refused; and
 * none once the sidecar is stopping, since its data port closes first while
 * this port still answers until the drain and the audit close are done.
 */
export async function healthRoutes(
  app: FastifyInstance,
  options: { store: PolicyStore; recording: RecordingHealth },
): Promise<void> {
  app.get('/healthz', async (_request, reply) => {
    if (options.recording.failed?.()) {
      return reply.code(503).send({
        status: 'failing',
        reason:
          'an audit spool write failed: requests are refused until the sidecar restarts and recovers its spool',
      });
    }
    return { status: 'ok' };
  });
  app.get('/readyz', async (_request, reply) => {
    if (options.recording.stopping?.aborted) {
      return reply.code(503).send({ status: 'not ready', reason: 'stopping' });
    }
    const policy = options.store.current();
    if (!policy) return reply.code(503).send({ status: 'not ready', reason: 'no valid policy' });
    if (!options.recording.accepting()) {
      return reply
        .code(503)
        .send({ status: 'not ready', reason: 'the audit spool is full or failing; requests are refused' });
    }
    return { status: 'ready', policy: { name: policy.name, hash: policy.hash } };
  });
}
