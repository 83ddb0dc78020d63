import type { FastifyReply, FastifyRequest } from 'fastify';
import { type PushTokenVerifier, sendRefusal, type TokenRequirement } from './pushtoken.ts';

/** A route's token check, run as its onRequest hook, and the claims it let through. */
export interface TokenGate<T> {
  onRequest(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined>;
  claimsOf(request: FastifyRequest): T;
}

/**
 * Checks the token when the request arrives, before its body is read: the
 * body may be megabytes of JSON, and only the controller gets it parsed.
 */
export function tokenGate<T>(verifier: PushTokenVerifier, requirement: TokenRequirement<T>): TokenGate<T> {
  const verified = new WeakMap<FastifyRequest, T>();
  return {
    async onRequest(request, reply) {
      const check = await verifier.verify(request, requirement);
      if (!check.ok) {
        await sendRefusal(reply, check.refusal);
        return reply;
      }
      verified.set(request, check.claims);
      return undefined;
    },
    claimsOf(request) {
      const claims = verified.get(request);
      if (claims === undefined) throw new Error('a policy request reached its handler unverified');
      return claims;
    },
  };
}
