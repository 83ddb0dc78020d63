// What the controller tells the webhook (a new pod's bootstrap policy) and the
// pull endpoint (a sidecar asking for its policy), from this replica's cache.
// Out of sync, the cache vouches for nothing.
import { sidecarPolicySpec } from '@veil/core';
import type { Distributor } from './distributor.ts';
import type { GoneConfirmation } from './gone-confirmation.ts';
import { policyKey } from './policies.ts';
import type { PolicyCache } from './policy-cache.ts';
import type { PolicyLookup } from './pull.ts';

export type PolicyAnswersOptions = {
  /** Namespaces watched; empty means all. */
  namespaces: readonly string[];
  /** Whether the policy cache holds what the API server holds. */
  inSync(): boolean;
  distributor: Pick<Distributor, 'desired'>;
  cache: Pick<PolicyCache, 'has'>;
  gone: Pick<GoneConfirmation, 'confirmedGone'>;
};

const outOfSync = 'the policy cache is not in sync with the API server';

export class PolicyAnswers {
  readonly #options: PolicyAnswersOptions;

  constructor(options: PolicyAnswersOptions) {
    this.#options = options;
  }

  /** `{name, spec}` of the last valid version; rejects while the cache is out of sync. */
  async bootstrapPolicy(namespace: string, name: string): Promise<object | undefined> {
    // A cache that missed events may hold a policy since edited or deleted:
    // the webhook then refuses the pod rather than write that copy into it.
    if (!this.#options.inSync())
      throw new Error(`${outOfSync}: EmbeddingPolicy ${namespace}/${name} cannot be vouched for now`);
    const desired = this.#options.distributor.desired(policyKey(namespace, name));
    return desired === undefined ? undefined : { name: desired.name, spec: sidecarPolicySpec(desired.spec) };
  }

  async lookup(namespace: string, name: string): Promise<PolicyLookup> {
    const { namespaces, inSync, distributor, cache, gone } = this.#options;
    const key = policyKey(namespace, name);
    if (namespaces.length > 0 && !namespaces.includes(namespace))
      return { kind: 'unavailable', reason: `this controller does not watch namespace ${namespace}` };
    // Out of sync, the cache vouches neither way: what it holds may have been edited or deleted.
    if (!inSync()) return { kind: 'unavailable', reason: outOfSync };
    const desired = distributor.desired(key);
    if (desired !== undefined) return { kind: 'valid', policy: desired };
    if (cache.has(key))
      return { kind: 'unavailable', reason: `this replica knows no valid version of ${key}` };
    if (!(await gone.confirmedGone(key)))
      return { kind: 'unavailable', reason: `this replica has not seen ${key} yet` };
    return { kind: 'absent' };
  }
}
