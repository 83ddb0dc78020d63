// POST /v1/approvals/<ns>/<name>/use: consumes an approval for one requester
// and payload. What a caller cannot do is approve: decisions go through the API
// server and its stamping webhook, and consuming an approval needs the
// requester identity and payload digest it was opened for. Because an opener
// chooses what approvers are shown, a use must also present the policy, rule
// and counts the sidecar actually holds, and checkUse refuses any that differ
// from the approval's (see @veil/core's approvals/lifecycle.ts).
import {
  checkUse,
  markFailure,
  missingApprovalError,
  ruleChangeRefusal,
  useApprovalSchema,
} from '@veil/core';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { Log } from '../log.ts';
import { expireIfDue } from './expiry.ts';
import { approvalParamsSchema } from './params.ts';
import type { PodCallers } from './pod-callers.ts';
import type { ApprovalRules } from './rules.ts';
import type { ApprovalStore, Stored } from './store.ts';
import { view } from './view.ts';

export type UseRouteOptions = {
  callers: PodCallers;
  store: ApprovalStore;
  rules: ApprovalRules;
  now: () => Date;
  log: Log;
};

export function registerUseRoute(app: FastifyInstance, options: UseRouteOptions): void {
  const { callers, store, rules, now, log } = options;
  app.post('/v1/approvals/:namespace/:name/use', async (request, reply) => {
    const who = callers.of(request);
    const params = approvalParamsSchema.safeParse(request.params);
    const body = useApprovalSchema.safeParse(request.body);
    if (!params.success || !body.success) return reply.code(400).send({ error: 'invalid use request' });
    const { namespace, name } = params.data;
    if (who.namespace !== namespace) {
      return reply.code(403).send({ error: `${who.username} may use approvals of ${who.namespace} only` });
    }
    let stored = await store.read(namespace, name);
    if (stored === undefined) return reply.code(404).send({ error: missingApprovalError(namespace, name) });
    stored = await expireIfDue(store, stored, now());
    const check = checkUse(name, stored, body.data, now());
    if (!check.ok) return refuseUse(reply, rules, stored, check);
    const current = await rules.now(stored);
    if (current.kind === 'unknown') {
      log.warn('approval use deferred: no valid version of its policy known here now', {
        namespace,
        name,
        policy: stored.spec.policy,
      });
      return reply.code(503).send({
        error: `the controller cannot check approval ${name} against EmbeddingPolicy ${stored.spec.policy} now; retry`,
      });
    }
    const ruleChanged = ruleChangeRefusal(name, stored.spec, current.rule);
    if (ruleChanged !== undefined) {
      log.info('approval use refused: rule changed', { namespace, name, rule: stored.spec.rule });
      return refuseUse(reply, rules, stored, ruleChanged);
    }
    if (check.markUsed) {
      try {
        // The resourceVersion test makes two concurrent uses race for one success.
        stored = await store.patchStatus(stored, [
          { op: 'add', path: '/status/usedAt', value: now().toISOString() },
        ]);
      } catch (error) {
        log.warn('approval use not marked', { namespace, name, error: (error as Error).message });
        const current = await store.read(namespace, name).catch(() => undefined);
        return refuseUse(reply, rules, current, markFailure(name, current, body.data, now()));
      }
    }
    return view(stored, rules.of(stored));
  });
}

/** The answer to a use refused, with the approval when the refusal says the sidecar may wait on. */
function refuseUse(
  reply: FastifyReply,
  rules: ApprovalRules,
  stored: Stored | undefined,
  refusal: { status: number; error: string; reason: string; withApproval: boolean },
): FastifyReply {
  return reply.code(refusal.status).send({
    error: refusal.error,
    reason: refusal.reason,
    ...(refusal.withApproval && stored ? { approval: view(stored, rules.of(stored)) } : {}),
  });
}
