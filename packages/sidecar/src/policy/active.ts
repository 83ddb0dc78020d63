import { compileMasking, type MaskingEngine, type PolicySpec, policyHash } from '@veil/core';
import { type Authenticator, createAuthenticator } from '../auth/authenticator.ts';
import { type AccessDecision, type Caller, compileAccess } from '../enforce/access.ts';
import { VectorRateLimiter } from '../enforce/limits.ts';

/** A validated policy compiled into what the request path calls. */
export interface ActivePolicy {
  readonly name: string;
  readonly hash: string;
  readonly spec: PolicySpec;
  readonly authenticator: Authenticator;
  readonly masking: MaskingEngine;
  readonly access: (caller: Caller, model: string) => AccessDecision;
  readonly limiter: VectorRateLimiter;
  /** The routes the policy allow-lists besides the embedding APIs, each as `METHOD path`. */
  readonly extraRoutes: ReadonlySet<string>;
}

export interface CompileOptions {
  readonly hashKey: Uint8Array;
  readonly authOptions?: Parameters<typeof createAuthenticator>[1];
}

/**
 * Compiles spec, reusing the previous policy's authenticator (and its JWKS
 * caches) when its settings did not change, and its rate-limit buckets always,
 * so a policy push neither refetches keys nor hands every caller a fresh budget.
 */
export function compilePolicy(
  name: string,
  spec: PolicySpec,
  options: CompileOptions,
  previous?: ActivePolicy,
): ActivePolicy {
  const masking = compileMasking(spec.masking.rules, { hashKey: options.hashKey });
  const sameAuth =
    previous && JSON.stringify(previous.spec.authentication) === JSON.stringify(spec.authentication);
  const authenticator = sameAuth
    ? previous.authenticator
    : createAuthenticator(spec.authentication, options.authOptions);
  return {
    name,
    hash: policyHash(spec),
    spec,
    authenticator,
    masking,
    access: compileAccess(spec.access.rules),
    limiter: limiterFor(spec.limits.vectorsPerMinute, previous),
    extraRoutes: new Set(spec.access.allowRoutes.map((r) => `${r.method} ${r.path}`)),
  };
}

function limiterFor(perMinute: number, previous: ActivePolicy | undefined): VectorRateLimiter {
  if (previous === undefined) return new VectorRateLimiter(perMinute);
  const samePerMinute = previous.spec.limits.vectorsPerMinute === perMinute;
  return samePerMinute ? previous.limiter : previous.limiter.withRate(perMinute);
}
