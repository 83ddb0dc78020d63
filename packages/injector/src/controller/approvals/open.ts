// POST /v1/approvals: opens an approval for a held request.
//
// Approver groups, count, expiry and notification come from the EmbeddingPolicy
// the controller holds, never from the sidecar. The sidecar sends a masked summary
// and counts only; the controller caps the summary and stores no inputs.
//
// Every approval is kept past its expiry, so one requester (issuer and subject)
// may have at most the policy's approvals.maxPendingPerCaller approvals Pending
// in a namespace: an open beyond it is refused 429. Each approval carries a
// label hashing its requester, by which they are counted; two opens at once may
// both pass, so the cap holds about, not exactly.
import {
  newApprovalSpec,
  openApprovalSchema,
  openProblems,
  pendingQuotaRefusal,
  policySpecSchema,
} from '@veil/core';
import type { FastifyInstance } from 'fastify';
import type { DesiredPolicy } from '../distributor.ts';
import type { Log } from '../log.ts';
import { type Notifier, notification } from './notification.ts';
import type { PodCallers } from './pod-callers.ts';
import type { ApprovalStore } from './store.ts';
import { view } from './view.ts';

export type OpenRouteOptions = {
  callers: PodCallers;
  store: ApprovalStore;
  policy(namespace: string, name: string): DesiredPolicy | undefined;
  /** Whether `policy` answers from a cache in sync with the API server. */
  inSync(): boolean;
  now: () => Date;
  notify: Notifier;
  log: Log;
};

export function registerOpenRoute(app: FastifyInstance, options: OpenRouteOptions): void {
  const { callers, store, inSync, now, notify, log } = options;
  app.post('/v1/approvals', async (request, reply) => {
    const who = callers.of(request);
    const body = openApprovalSchema.safeParse(request.body);
    if (!body.success)
      return reply.code(400).send({ error: `invalid approval request: ${openProblems(body.error)}` });
    const namespace = who.namespace;
    if (!inSync()) return reply.code(503).send({ error: outOfSync(namespace, body.data.policy) });
    const desired = options.policy(namespace, body.data.policy);
    const spec = desired ? policySpecSchema.safeParse(desired.spec) : undefined;
    const approvals = spec?.success ? spec.data.approvals : undefined;
    const rule = approvals?.rules.find((r) => r.name === body.data.rule);
    if (approvals === undefined || rule === undefined) {
      return reply.code(404).send({
        error: `no approval rule ${body.data.rule} in EmbeddingPolicy ${namespace}/${body.data.policy}`,
      });
    }
    const pending = await store.pendingOf(namespace, body.data.requester);
    const overQuota = pendingQuotaRefusal(
      pending,
      approvals.maxPendingPerCaller,
      namespace,
      `EmbeddingPolicy ${body.data.policy}`,
    );
    if (overQuota !== undefined) {
      log.info('approval refused: too many pending', {
        namespace,
        rule: rule.name,
        caller: who.username,
        pending,
      });
      return reply.code(429).send({ error: overQuota });
    }
    // The pod is the one the token is bound to: what approvers are shown of it is not the opener's word.
    const opened = { ...body.data, pod: { name: who.pod.name } };
    const stored = await store.create(namespace, newApprovalSpec(opened, namespace, rule, now()));
    const { name } = stored.metadata;
    log.info('approval opened', { namespace, name, rule: rule.name, caller: who.username });
    if (rule.notify) {
      notify(rule.notify.url, notification(stored)).catch((error) =>
        log.warn('approval notification failed', {
          namespace,
          name,
          error: (error as Error).message,
        }),
      );
    }
    return reply.code(201).send(view(stored, rule));
  });
}

function outOfSync(namespace: string, policy: string): string {
  return `the controller's policy cache is not in sync with the API server, so EmbeddingPolicy ${namespace}/${policy} cannot be read now; retry`;
}
