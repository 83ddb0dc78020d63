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
 * caches) when its settings did not change, so a policy push does not refetch
 * keys. The rate-limit buckets are given: the store keeps one table for every
 * policy, so a push hands no caller a fresh budget (see `enterForce`).
 */
export function compilePolicy(
  name: string,
  spec: PolicySpec,
  options: CompileOptions,
  shared: { readonly previous?: ActivePolicy | undefined; readonly limiter: VectorRateLimiter },
): ActivePolicy {
  const { previous, limiter } = shared;
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
    limiter,
    extraRoutes: new Set(spec.access.allowRoutes.map((r) => `${r.method} ${r.path}`)),
  };
}

/**
 * Sets the shared buckets to policy's rate, as it comes into force: not when
 * it is compiled, as the one it replaces may stay in force if it is refused.
 */
export function enterForce(policy: ActivePolicy): void {
  policy.limiter.setRate(policy.spec.limits.vectorsPerMinute);
}
