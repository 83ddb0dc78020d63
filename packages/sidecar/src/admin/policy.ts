import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { PolicyStore } from '../policy/store.ts';
import { PushTokenVerifier, refuseToken } from './pushtoken.ts';
import { tokenGate } from './tokengate.ts';

export { CONTROLLER_ISSUER, sidecarAudience, spentTokensFile } from './pushtoken.ts';

const policyNameSchema = z.string().min(1).max(253);
const policyHashSchema = z.string().regex(/^sha256:[0-9a-f]{64}$/);
const pushSchema = z.object({ name: policyNameSchema, spec: z.unknown() });

/** A push token also names the policy it authorises: the controller's `policy` claim. */
const pushClaimsSchema = z.object({ policy: z.object({ name: policyNameSchema, hash: policyHashSchema }) });

/**
 * A revocation token names the policy it drops and the version it saw in force:
 * a revocation arriving after a newer version was pushed drops nothing.
 */
const revokeClaimsSchema = z.object({ revoke: z.object({ name: policyNameSchema, hash: policyHashSchema }) });

const unbound = 'the policy is not the one its push token names';

export interface PolicyRoutesOptions {
  readonly store: PolicyStore;
  readonly podUid: string;
  /** The policy this sidecar was configured to enforce (`VEIL_POLICY_NAME`): a push of any other is refused. */
  readonly policyName: string;
  /** The controller's public JWK; without it pushes are refused. */
  readonly controllerKeyFile: string | undefined;
  readonly log?: (message: string) => void;
}

/**
 * `PUT /v1/policy` takes a policy from the controller, over TLS only (see
 * certificate.ts): ACK with the content
 * hash, or NACK (422) with the reason while the last good policy stays; a
 * policy other than the one this sidecar enforces is NACKed too. The
 * token authorises one push of one policy: a body other than the one it names,
 * or a token presented twice (before a restart too, when the store has a
 * state folder), is refused (401) and nothing is applied. TLS and
 * the token are checked before the body is read.
 *
 * `DELETE /v1/policy` is the controller saying the policy was deleted: with a
 * token whose `revoke` claim names the policy this sidecar enforces, it drops
 * it, leaving nothing in force (every request 503, not ready) across restarts
 * too, and ACKs; a revocation of another policy is NACKed (422). Its token is
 * verified and spent as a push's is; a push token does not revoke, nor a
 * revocation token push.
 */
export async function policyRoutes(app: FastifyInstance, options: PolicyRoutesOptions): Promise<void> {
  const verifier = await PushTokenVerifier.open({
    controllerKeyFile: options.controllerKeyFile,
    stateDir: options.store.stateDir,
    podUid: options.podUid,
    log: options.log,
  });
  getPolicyRoute(app, options);
  putPolicyRoute(app, options, verifier);
  deletePolicyRoute(app, options, verifier);
}

function getPolicyRoute(app: FastifyInstance, options: PolicyRoutesOptions): void {
  app.get('/v1/policy', async (_request, reply) => {
    const policy = options.store.current();
    if (!policy) return reply.code(404).send({ error: 'no policy loaded' });
    return { name: policy.name, hash: policy.hash };
  });
}

function putPolicyRoute(
  app: FastifyInstance,
  options: PolicyRoutesOptions,
  verifier: PushTokenVerifier,
): void {
  const push = tokenGate(verifier, {
    bound: pushClaimsSchema,
    missing: 'the push token must carry a jti and the policy it authorises',
  });
  app.put('/v1/policy', { onRequest: push.onRequest }, async (request, reply) => {
    const { policy } = push.claimsOf(request);
    const body = pushSchema.safeParse(request.body);
    if (!body.success) return reply.code(400).send({ status: 'nack', reason: 'body must be {name, spec}' });
    if (body.data.name !== policy.name) return refuseToken(reply, unbound);
    const result = await options.store.apply(body.data.name, body.data.spec, {
      expectedHash: policy.hash,
      onlyNamed: options.policyName,
    });
    if (!result.ok && result.unbound) return refuseToken(reply, unbound);
    if (!result.ok) return reply.code(422).send({ status: 'nack', reason: result.reason });
    return { status: 'ack', hash: result.hash };
  });
}

function deletePolicyRoute(
  app: FastifyInstance,
  options: PolicyRoutesOptions,
  verifier: PushTokenVerifier,
): void {
  const revocation = tokenGate(verifier, {
    bound: revokeClaimsSchema,
    missing: 'the revocation token must carry a jti and the policy it revokes',
    // Replayed, a revocation can only take the policy out of force again, never
    // put an old one back: refusing it would leave a deleted policy serving.
    appliesWhenUnrecorded: true,
  });
  app.delete('/v1/policy', { onRequest: revocation.onRequest }, async (request, reply) => {
    const { name, hash } = revocation.claimsOf(request).revoke;
    const result = await options.store.revoke(name, { onlyNamed: options.policyName, onlyHash: hash });
    if (!result.ok) return reply.code(422).send({ status: 'nack', reason: result.reason });
    if (result.changed)
      options.log?.(`policy ${name} revoked by the controller: it was deleted; serving nothing`);
    return { status: 'ack', revoked: name };
  });
}
