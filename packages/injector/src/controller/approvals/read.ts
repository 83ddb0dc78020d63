// GET /v1/approvals/<ns>/<name>?wait=S: the decision, long-polled up to S
// seconds. Any injected pod of the approval's namespace may read it: a retry
// after a restart comes from another pod of the Deployment.
import { missingApprovalError } from '@veil/core';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { expireIfDue } from './expiry.ts';
import type { LongPolls } from './long-polls.ts';
import { approvalParamsSchema } from './params.ts';
import type { PodCallers } from './pod-callers.ts';
import type { ApprovalRules } from './rules.ts';
import type { ApprovalStore } from './store.ts';
import { view } from './view.ts';

const maxWaitSeconds = 600;

export type ReadRouteOptions = {
  callers: PodCallers;
  store: ApprovalStore;
  longPolls: LongPolls;
  rules: ApprovalRules;
  now: () => Date;
};

export function registerReadRoute(app: FastifyInstance, options: ReadRouteOptions): void {
  const { callers, store, longPolls, rules, now } = options;
  app.get('/v1/approvals/:namespace/:name', async (request, reply) => {
    const who = callers.of(request);
    const params = approvalParamsSchema.safeParse(request.params);
    if (!params.success) return reply.code(400).send({ error: 'namespace and name must be DNS labels' });
    const { namespace, name } = params.data;
    if (who.namespace !== namespace) {
      return reply.code(403).send({ error: `${who.username} may read approvals of ${who.namespace} only` });
    }
    const wait = z.coerce
      .number()
      .min(0)
      .max(maxWaitSeconds)
      .default(0)
      .safeParse((request.query as { wait?: string }).wait);
    if (!wait.success) return reply.code(400).send({ error: `wait is 0 to ${maxWaitSeconds} seconds` });
    const deadline = performance.now() + wait.data * 1000;
    const first = await store.read(namespace, name);
    const stored =
      first === undefined
        ? undefined
        : await longPolls.awaitDecision(
            who,
            await expireIfDue(store, first, now()),
            deadline,
            () => request.raw.destroyed,
          );
    if (request.raw.destroyed) return reply;
    if (stored === undefined) return reply.code(404).send({ error: missingApprovalError(namespace, name) });
    return view(stored, rules.of(stored));
  });
}
