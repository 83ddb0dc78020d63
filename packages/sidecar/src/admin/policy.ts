import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { importJWK, type JWK, jwtVerify } from 'jose';
import { z } from 'zod';
import type { PolicyStore } from '../policy/store.ts';
import { SpentTokens } from './spenttokens.ts';

export const CONTROLLER_ISSUER = 'veil-controller';

/** Beside the last good policy: the spent push tokens, so a restart does not reopen them to a replay. */
export const spentTokensFile = 'spent-push-tokens.json';

/** A push is for one pod: a token minted for another cannot be replayed here. */
export function sidecarAudience(podUid: string): string {
  return `veil-sidecar:${podUid}`;
}

type VerifyKey = Awaited<ReturnType<typeof importJWK>>;

const policyNameSchema = z.string().min(1).max(253);
const policyHashSchema = z.string().regex(/^sha256:[0-9a-f]{64}$/);
const pushSchema = z.object({ name: policyNameSchema, spec: z.unknown() });

/** Older than this (from `iat`) a push token is refused, whatever its `exp`. */
const maxTokenAgeSeconds = 300;
/**
 * How far the controller's clock and this node's may differ: the controller
 * backdates `iat` by a few seconds only, so without it a node a little behind
 * refuses every push as issued in the future.
 */
const clockToleranceSeconds = 30;

/** What every verified token, push or revocation, carries besides its signature: a `jti` to spend. */
const tokenClaimsSchema = z.object({
  jti: z.string().min(1).max(128),
  iat: z.number(),
  exp: z.number(),
});

/** A push token also names the policy it authorises: the controller's `policy` claim. */
const pushClaimsSchema = z.object({ policy: z.object({ name: policyNameSchema, hash: policyHashSchema }) });

/**
 * A revocation token names the policy it drops and the version it saw in force:
 * a revocation arriving after a newer version was pushed drops nothing.
 */
const revokeClaimsSchema = z.object({ revoke: z.object({ name: policyNameSchema, hash: policyHashSchema }) });

const unbound = 'the policy is not the one its push token names';

/**
 * A 401 with RFC 6750's challenge, worded as the data port's: `invalid_token`
 * for a bearer token that did not pass, a bare `Bearer` when none was sent.
 */
function refuseToken(reply: FastifyReply, reason: string, tokenPresented = true): FastifyReply {
  return reply
    .code(401)
    .header('www-authenticate', tokenPresented ? 'Bearer error="invalid_token"' : 'Bearer')
    .send({ status: 'nack', reason });
}

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
  const keyFile = options.controllerKeyFile;
  // Read once at start, so a sidecar whose key file is broken says so at once.
  const key = keyFile ? new ControllerKeyFile(keyFile) : undefined;
  await key?.current();
  const stateDir = options.store.stateDir;
  // Only a sidecar that takes pushes keeps a record of their tokens.
  const spent = await SpentTokens.open({
    file: key === undefined || stateDir === undefined ? undefined : join(stateDir, spentTokensFile),
    clockToleranceSeconds,
    log: options.log,
  });

  app.get('/v1/policy', async (_request, reply) => {
    const policy = options.store.current();
    if (!policy) return reply.code(404).send({ error: 'no policy loaded' });
    return { name: policy.name, hash: policy.hash };
  });

  /**
   * The request's token, verified, carrying the claims `bound` requires, and
   * spent; or undefined once the refusal is sent. Spent on first presentation,
   * before the body is looked at: the token is the controller's for one
   * request, whatever that request carries.
   */
  async function verifiedToken<T>(
    request: FastifyRequest,
    reply: FastifyReply,
    gate: GateOptions<T>,
  ): Promise<T | undefined> {
    const { bound, missing } = gate;
    if (!key) {
      await reply.code(403).send({ status: 'nack', reason: 'this sidecar accepts no pushes' });
      return undefined;
    }
    // Fail closed: the controller pushes over TLS only, where it knows it reached this pod.
    if (!(request.raw.socket as TLSSocket).encrypted) {
      await reply.code(403).send({ status: 'nack', reason: 'pushes must use HTTPS' });
      return undefined;
    }
    let trusted: VerifyKey;
    try {
      trusted = await key.current();
    } catch {
      // Unavailable, not refused: the controller tries again, and the file may be back by then.
      await reply.code(503).send({ status: 'nack', reason: "the controller's key file cannot be read" });
      return undefined;
    }
    const token = /^Bearer (.+)$/i.exec(request.headers.authorization ?? '')?.[1];
    let payload: unknown;
    try {
      if (!token) throw new Error('missing token');
      ({ payload } = await jwtVerify(token, trusted, {
        issuer: CONTROLLER_ISSUER,
        audience: sidecarAudience(options.podUid),
        algorithms: ['EdDSA', 'ES256'],
        maxTokenAge: maxTokenAgeSeconds,
        clockTolerance: clockToleranceSeconds,
        requiredClaims: ['exp', 'iat'],
      }));
    } catch {
      await refuseToken(reply, 'push not signed by the controller', token !== undefined);
      return undefined;
    }
    const claims = tokenClaimsSchema.safeParse(payload);
    const purpose = bound.safeParse(payload);
    if (!claims.success || !purpose.success) {
      await refuseToken(reply, missing);
      return undefined;
    }
    const { jti, iat, exp } = claims.data;
    // Kept while the token still verifies, the tolerance included.
    const until = Math.min(exp, iat + maxTokenAgeSeconds) + clockToleranceSeconds;
    const spend = await spent.spend({ jti, until, issuedAt: iat });
    if (spend === 'replayed') {
      await refuseToken(reply, 'push token already used');
      return undefined;
    }
    if (spend === 'forgotten') {
      await refuseToken(
        reply,
        'push token issued before a restart that lost the record of spent ones; retry with a new one',
      );
      return undefined;
    }
    if (spend === 'full') {
      await reply.code(503).send({ status: 'nack', reason: 'too many pushes; retry' });
      return undefined;
    }
    if (spend === 'unrecorded' && !gate.appliesWhenUnrecorded) {
      // Fail closed: a token not on record would verify again after a restart.
      options.log?.('a push token could not be recorded as spent in the state folder; the push is refused');
      await reply.code(503).send({ status: 'nack', reason: 'the push token cannot be recorded; retry' });
      return undefined;
    }
    return purpose.data;
  }

  /**
   * Checks the token when the request arrives, before its body is read: the
   * body may be megabytes of JSON, and only the controller gets it parsed.
   */
  function tokenGate<T>(gate: GateOptions<T>): TokenGate<T> {
    const verified = new WeakMap<FastifyRequest, T>();
    return {
      async onRequest(request, reply) {
        const claims = await verifiedToken(request, reply, gate);
        if (claims === undefined) return reply;
        verified.set(request, claims);
        return undefined;
      },
      claimsOf(request) {
        const claims = verified.get(request);
        if (claims === undefined) throw new Error('a policy request reached its handler unverified');
        return claims;
      },
    };
  }

  const push = tokenGate({
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

  const revocation = tokenGate({
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

/** What a route's token must carry, and whether it applies though its spending could not be saved. */
interface GateOptions<T> {
  readonly bound: z.ZodType<T>;
  /** The refusal when the token lacks the claims. */
  readonly missing: string;
  readonly appliesWhenUnrecorded?: boolean;
}

/** A route's token check, run as its onRequest hook, and the claims it let through. */
interface TokenGate<T> {
  onRequest(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined>;
  claimsOf(request: FastifyRequest): T;
}

/**
 * The controller's public key, read from its file again for each push. The file
 * is mounted from the ConfigMap the controller publishes, which the kubelet
 * updates in place when the controller's key is rotated: a running sidecar
 * then trusts the new key, and only it, without a restart. A file that cannot
 * be read or holds no key fails the push; no earlier key stands in for it.
 */
class ControllerKeyFile {
  readonly #file: string;
  #loaded: { text: string; key: VerifyKey } | undefined;

  constructor(file: string) {
    this.#file = file;
  }

  async current(): Promise<VerifyKey> {
    const text = await readFile(this.#file, 'utf8');
    if (this.#loaded?.text !== text) this.#loaded = { text, key: await importKey(text) };
    return this.#loaded.key;
  }
}

function importKey(text: string): ReturnType<typeof importJWK> {
  const jwk = JSON.parse(text) as JWK;
  return importJWK(jwk, jwk.alg ?? (jwk.crv === 'Ed25519' ? 'EdDSA' : 'ES256'));
}
