// An approval holds under the rule it was opened under: the hash of that rule's
// content is recorded in spec.ruleHash at opening (the spec only the controller
// may change), and a use is refused (409, reason `rule`) once the policy's rule
// differs or is gone. An approval without it (opened before it was recorded) is
// refused the same way. A replica that knows no valid version of a policy that
// still exists (a fresh one while the latest edit is invalid) cannot tell, and
// answers 503: another replica, or this one later, can.
import type { CustomObjectsApi } from '@kubernetes/client-node';
import { type ApprovalRule, GROUP, policySpecSchema, VERSION } from '@veil/core';
import type { DesiredPolicy } from '../distributor.ts';
import type { Log } from '../log.ts';
import { policyPlural } from '../policies.ts';
import type { Stored } from './store.ts';

/** An approval's rule now: known (undefined once gone), or unknown to this replica. */
export type RuleNow = { kind: 'known'; rule: ApprovalRule | undefined } | { kind: 'unknown' };

export type ApprovalRulesOptions = {
  api: CustomObjectsApi;
  policy(namespace: string, name: string): DesiredPolicy | undefined;
  /** Whether `policy` answers from a cache in sync with the API server. */
  inSync(): boolean;
  log: Log;
};

export class ApprovalRules {
  readonly #options: ApprovalRulesOptions;

  constructor(options: ApprovalRulesOptions) {
    this.#options = options;
  }

  /** The approval's rule in the valid version of its policy this replica holds; undefined without one. */
  of(stored: Stored): ApprovalRule | undefined {
    const desired = this.#options.policy(stored.metadata.namespace, stored.spec.policy);
    return desired === undefined ? undefined : ruleIn(desired, stored.spec.rule);
  }

  /**
   * The approval's rule as it stands, for a use. It is known to be gone only
   * when the valid version this replica holds lacks it, or the API server has
   * no such policy. A policy that exists without a valid version here (or that
   * cannot be read now) leaves it unknown: refusing the use as if the rule were
   * gone would depend on the replica asked.
   */
  async now(stored: Stored): Promise<RuleNow> {
    const { api, log } = this.#options;
    const { namespace } = stored.metadata;
    if (!this.#options.inSync()) return { kind: 'unknown' };
    const desired = this.#options.policy(namespace, stored.spec.policy);
    if (desired !== undefined) return { kind: 'known', rule: ruleIn(desired, stored.spec.rule) };
    try {
      await api.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace,
        plural: policyPlural,
        name: stored.spec.policy,
      });
      return { kind: 'unknown' };
    } catch (error) {
      if ((error as { code?: number }).code === 404) return { kind: 'known', rule: undefined };
      log.warn('policy of an approval not read', {
        namespace,
        policy: stored.spec.policy,
        error: (error as Error).message,
      });
      return { kind: 'unknown' };
    }
  }
}

/** `name` among the approval rules of a valid policy version. */
export function ruleIn(desired: DesiredPolicy, name: string): ApprovalRule | undefined {
  const spec = policySpecSchema.safeParse(desired.spec);
  return spec.success ? spec.data.approvals.rules.find((r) => r.name === name) : undefined;
}
