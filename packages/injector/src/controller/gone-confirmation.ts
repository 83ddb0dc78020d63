// Whether a policy is gone, on the API server's word rather than this replica's
// cache: only a sure "gone" revokes a policy or tells a sidecar to drop it.
import type { CustomObjectsApi } from '@kubernetes/client-node';
import { GROUP, VERSION } from '@veil/core';
import { policyKeyParts, policyPlural } from './policies.ts';

export type GoneConfirmationOptions = {
  api: Pick<CustomObjectsApi, 'getNamespacedCustomObject'>;
  /** Whether this replica's policy cache holds the policy. */
  cached(policyKey: string): boolean;
  /** Whether that cache holds what the API server holds. */
  inSync(): boolean;
};

export class GoneConfirmation {
  readonly #options: GoneConfirmationOptions;
  readonly #asked = new Map<string, Promise<boolean>>();

  constructor(options: GoneConfirmationOptions) {
    this.#options = options;
  }

  /**
   * Whether the API server itself says the policy does not exist. A cache can
   * lack a policy that exists (its watch down or behind, another replica's
   * admission ahead of this one), so nothing is revoked, and no sidecar told to
   * drop its policy, on this replica's cache alone.
   */
  async confirmedGone(key: string): Promise<boolean> {
    if (this.#options.cached(key) || !this.#options.inSync()) return false;
    // Every pod of a deleted policy asks at once: they share the request under way.
    let asking = this.#asked.get(key);
    if (asking === undefined) {
      asking = this.#apiServerSaysGone(key).finally(() => this.#asked.delete(key));
      this.#asked.set(key, asking);
    }
    return asking;
  }

  async #apiServerSaysGone(key: string): Promise<boolean> {
    try {
      await this.#options.api.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        plural: policyPlural,
        ...policyKeyParts(key),
      });
      return false;
    } catch (error) {
      return (error as { code?: number }).code === 404;
    }
  }
}
