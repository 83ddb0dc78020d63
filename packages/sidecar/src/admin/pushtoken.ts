import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { type JWTPayload, jwtVerify } from 'jose';
import { z } from 'zod';
import { ControllerKeyFile, type VerifyKey } from './controllerkey.ts';
import { SpentTokens } from './spenttokens.ts';

export const CONTROLLER_ISSUER = 'veil-controller';

/** Beside the last good policy: the spent push tokens, so a restart does not reopen them to a replay. */
export const spentTokensFile = 'spent-push-tokens.json';

/** A push is for one pod: a token minted for another cannot be replayed here. */
export function sidecarAudience(podUid: string): string {
  return `veil-sidecar:${podUid}`;
}

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
type TokenClaims = z.infer<typeof tokenClaimsSchema>;

/** What a route's token must carry, and whether it applies though its spending could not be saved. */
export interface TokenRequirement<T> {
  readonly bound: z.ZodType<T>;
  /** The refusal when the token lacks the claims. */
  readonly missing: string;
  readonly appliesWhenUnrecorded?: boolean;
}

/** Why a request's token did not pass, as the answer to send. */
export interface TokenRefusal {
  readonly statusCode: 401 | 403 | 503;
  readonly reason: string;
  /** For a 401: whether a bearer token was sent at all. */
  readonly tokenPresented?: boolean;
}

export type TokenCheck<T> =
  | { readonly ok: true; readonly claims: T }
  | { readonly ok: false; readonly refusal: TokenRefusal };

export interface PushTokenVerifierOptions {
  /** The controller's public JWK; without it pushes are refused. */
  readonly controllerKeyFile: string | undefined;
  /** The policy store's state folder, where spent tokens outlive a restart; in memory only without it. */
  readonly stateDir: string | undefined;
  readonly podUid: string;
  readonly log?: (message: string) => void;
}

/** The controller's tokens for pushes and revocations: each verified, then spent on its first presentation. */
export class PushTokenVerifier {
  readonly #key: ControllerKeyFile | undefined;
  readonly #spent: SpentTokens;
  readonly #podUid: string;
  readonly #log: ((message: string) => void) | undefined;

  private constructor(
    key: ControllerKeyFile | undefined,
    spent: SpentTokens,
    options: PushTokenVerifierOptions,
  ) {
    this.#key = key;
    this.#spent = spent;
    this.#podUid = options.podUid;
    this.#log = options.log;
  }

  static async open(options: PushTokenVerifierOptions): Promise<PushTokenVerifier> {
    const keyFile = options.controllerKeyFile;
    // Read once at start, so a sidecar whose key file is broken says so at once.
    const key = keyFile ? new ControllerKeyFile(keyFile) : undefined;
    await key?.current();
    const stateDir = options.stateDir;
    // Only a sidecar that takes pushes keeps a record of their tokens.
    const spent = await SpentTokens.open({
      file: key === undefined || stateDir === undefined ? undefined : join(stateDir, spentTokensFile),
      clockToleranceSeconds,
      log: options.log,
    });
    return new PushTokenVerifier(key, spent, options);
  }

  /**
   * The request's token, verified, carrying the claims `bound` requires, and
   * spent; or the refusal to send. Spent on first presentation, before the
   * body is looked at: the token is the controller's for one request, whatever
   * that request carries.
   */
  async verify<T>(request: FastifyRequest, requirement: TokenRequirement<T>): Promise<TokenCheck<T>> {
    if (!this.#key) return refused(403, 'this sidecar accepts no pushes');
    // Fail closed: the controller pushes over TLS only, where it knows it reached this pod.
    if (!(request.raw.socket as TLSSocket).encrypted) return refused(403, 'pushes must use HTTPS');
    let trusted: VerifyKey;
    try {
      trusted = await this.#key.current();
    } catch {
      // Unavailable, not refused: the controller tries again, and the file may be back by then.
      return refused(503, "the controller's key file cannot be read");
    }
    const token = /^Bearer (.+)$/i.exec(request.headers.authorization ?? '')?.[1];
    const payload = await this.#signedPayload(token, trusted);
    if (payload === undefined) return refused(401, 'push not signed by the controller', token !== undefined);
    const claims = tokenClaimsSchema.safeParse(payload);
    const purpose = requirement.bound.safeParse(payload);
    if (!claims.success || !purpose.success) return refused(401, requirement.missing);
    const refusal = await this.#spend(claims.data, requirement);
    return refusal ? { ok: false, refusal } : { ok: true, claims: purpose.data };
  }

  /** The token's payload, or undefined when there is no token or it is not the controller's for this pod. */
  async #signedPayload(token: string | undefined, trusted: VerifyKey): Promise<JWTPayload | undefined> {
    try {
      if (!token) throw new Error('missing token');
      const { payload } = await jwtVerify(token, trusted, {
        issuer: CONTROLLER_ISSUER,
        audience: sidecarAudience(this.#podUid),
        algorithms: ['EdDSA', 'ES256'],
        maxTokenAge: maxTokenAgeSeconds,
        clockTolerance: clockToleranceSeconds,
        requiredClaims: ['exp', 'iat'],
      });
      return payload;
    } catch {
      return undefined;
    }
  }

  /** Spends the token; the refusal when it may not be used (again), or undefined. */
  async #spend<T>(claims: TokenClaims, requirement: TokenRequirement<T>): Promise<TokenRefusal | undefined> {
    const { jti, iat, exp } = claims;
    // Kept while the token still verifies, the tolerance included.
    const until = Math.min(exp, iat + maxTokenAgeSeconds) + clockToleranceSeconds;
    const spend = await this.#spent.spend({ jti, until, issuedAt: iat });
    if (spend === 'replayed') return { statusCode: 401, reason: 'push token already used' };
    if (spend === 'forgotten')
      return {
        statusCode: 401,
        reason: 'push token issued before a restart that lost the record of spent ones; retry with a new one',
      };
    if (spend === 'full') return { statusCode: 503, reason: 'too many pushes; retry' };
    if (spend === 'unrecorded' && !requirement.appliesWhenUnrecorded) {
      // Fail closed: a token not on record would verify again after a restart.
      this.#log?.('a push token could not be recorded as spent in the state folder; the push is refused');
      return { statusCode: 503, reason: 'the push token cannot be recorded; retry' };
    }
    return undefined;
  }
}

function refused(
  statusCode: TokenRefusal['statusCode'],
  reason: string,
  tokenPresented?: boolean,
): TokenCheck<never> {
  return { ok: false, refusal: { statusCode, reason, tokenPresented } };
}

/**
 * A 401 with RFC 6750's challenge, worded as the data port's: `invalid_token`
 * for a bearer token that did not pass, a bare `Bearer` when none was sent.
 */
export function refuseToken(reply: FastifyReply, reason: string, tokenPresented = true): FastifyReply {
  return reply
    .code(401)
    .header('www-authenticate', tokenPresented ? 'Bearer error="invalid_token"' : 'Bearer')
    .send({ status: 'nack', reason });
}

/** Sends `refusal`: a 401 with its challenge, a 403 or 503 with the reason alone. */
export function sendRefusal(reply: FastifyReply, refusal: TokenRefusal): FastifyReply {
  if (refusal.statusCode === 401) return refuseToken(reply, refusal.reason, refusal.tokenPresented);
  return reply.code(refusal.statusCode).send({ status: 'nack', reason: refusal.reason });
}
