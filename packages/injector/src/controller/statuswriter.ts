// Writes EmbeddingPolicy status through the status subresource. Writes are
// throttled per policy (a wave of ACKs makes one write, not fifty), skipped when
// nothing would change (so the controller's own write, watched back, ends
// there), and conditional on the resourceVersion it was computed from: on a
// 409 the object is read again and the status recomputed.
import { isDeepStrictEqual } from 'node:util';
import { type CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { GROUP, VERSION } from '@veil/core';
import { backoffDelay } from './backoff.ts';
import type { Log } from './log.ts';
import { type EmbeddingPolicyObject, type PolicyStatus, policyPlural } from './policies.ts';

export type StatusPlan =
  | {
      kind: 'write';
      namespace: string;
      name: string;
      resourceVersion: string;
      status: PolicyStatus;
      stored: PolicyStatus | undefined;
    }
  /** Some pod has not answered yet: a status now would undercount. */
  | { kind: 'wait' }
  | { kind: 'gone' };

export type StatusWriterOptions = {
  api: CustomObjectsApi;
  plan(policyKey: string): StatusPlan;
  /** Feeds a fresher object (a write's answer, a re-read) back into the controller's view. */
  observe(object: EmbeddingPolicyObject): void;
  /** At most one write per policy this often; default 100 ms. */
  intervalMs?: number;
  log: Log;
};

const maxConflicts = 5;
const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

export class StatusWriter {
  readonly #options: StatusWriterOptions;
  readonly #timers = new Map<string, NodeJS.Timeout>();
  readonly #writing = new Set<string>();
  readonly #again = new Set<string>();
  readonly #failures = new Map<string, number>();
  #active = false;
  /** Counts writes, for tests and metrics. */
  writes = 0;

  constructor(options: StatusWriterOptions) {
    this.#options = options;
  }

  activate(): void {
    this.#active = true;
  }

  deactivate(): void {
    this.#active = false;
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    this.#again.clear();
  }

  schedule(policyKey: string, delayMs = this.#options.intervalMs ?? 100): void {
    if (!this.#active || this.#timers.has(policyKey)) return;
    if (this.#writing.has(policyKey)) {
      this.#again.add(policyKey);
      return;
    }
    const timer = setTimeout(() => {
      this.#timers.delete(policyKey);
      void this.#write(policyKey);
    }, delayMs);
    this.#timers.set(policyKey, timer);
  }

  async #write(policyKey: string): Promise<void> {
    this.#writing.add(policyKey);
    let retryMs: number | undefined;
    try {
      retryMs = await this.#writeOnce(policyKey);
    } finally {
      this.#writing.delete(policyKey);
    }
    if (retryMs !== undefined) this.schedule(policyKey, retryMs);
    else if (this.#again.delete(policyKey)) this.schedule(policyKey);
  }

  /** Resolves with a delay when the write must be tried again later. */
  async #writeOnce(policyKey: string): Promise<number | undefined> {
    const { api, log } = this.#options;
    for (let conflict = 0; conflict < maxConflicts; conflict++) {
      if (!this.#active) return undefined;
      const plan = this.#options.plan(policyKey);
      if (plan.kind !== 'write' || isDeepStrictEqual(plan.status, plan.stored)) return undefined;
      const target = {
        group: GROUP,
        version: VERSION,
        plural: policyPlural,
        namespace: plan.namespace,
        name: plan.name,
      };
      try {
        const updated = (await api.patchNamespacedCustomObjectStatus(
          { ...target, body: { metadata: { resourceVersion: plan.resourceVersion }, status: plan.status } },
          mergePatch,
        )) as EmbeddingPolicyObject;
        this.writes++;
        this.#failures.delete(policyKey);
        this.#options.observe(updated);
        return undefined;
      } catch (error) {
        const code = statusCode(error);
        if (code === 404) return undefined;
        if (code !== 409) {
          const failures = this.#failures.get(policyKey) ?? 0;
          this.#failures.set(policyKey, failures + 1);
          log.warn('status write failed', { policy: policyKey, code, error: messageOf(error) });
          return backoffDelay(failures, { initialMs: 500, maxMs: 30_000 });
        }
        // Someone wrote in between: start again from what is stored now.
        try {
          this.#options.observe((await api.getNamespacedCustomObject(target)) as EmbeddingPolicyObject);
        } catch (reread) {
          if (statusCode(reread) === 404) return undefined;
          return backoffDelay(0, { initialMs: 500, maxMs: 30_000 });
        }
      }
    }
    return backoffDelay(0, { initialMs: 500, maxMs: 30_000 });
  }
}

export function statusCode(error: unknown): number | undefined {
  const code = (error as { code?: unknown })?.code;
  return typeof code === 'number' ? code : undefined;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
