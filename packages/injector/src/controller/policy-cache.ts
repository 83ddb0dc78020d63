// The controller's cache of EmbeddingPolicies, one view a policy, fed by the
// informer and by the status writer's answers. A valid version goes to the
// distributor; a deleted policy is revoked from its pods.
import type { V1Pod } from '@kubernetes/client-node';
import type { Distributor } from './distributor.ts';
import type { InformerEvents } from './informers.ts';
import type { Log } from './log.ts';
import { podView } from './pods.ts';
import { type EmbeddingPolicyObject, type PolicyView, policyKey, policyView } from './policies.ts';
import type { KeyPublisher } from './publish.ts';
import type { StatusWriter } from './statuswriter.ts';

export type PolicyCacheOptions = {
  distributor: Pick<Distributor, 'setDesired' | 'forget' | 'deleted'>;
  /** Absent when the key is distributed some other way. */
  publisher: Pick<KeyPublisher, 'ensure'> | undefined;
  writer: Pick<StatusWriter, 'schedule'>;
  /** The injected pods as the informer holds them, to count a deleted policy's. */
  pods(): V1Pod[];
  log: Log;
};

export class PolicyCache implements InformerEvents<EmbeddingPolicyObject> {
  readonly #options: PolicyCacheOptions;
  readonly #views = new Map<string, PolicyView>();

  constructor(options: PolicyCacheOptions) {
    this.#options = options;
  }

  get(key: string): PolicyView | undefined {
    return this.#views.get(key);
  }

  has(key: string): boolean {
    return this.#views.has(key);
  }

  keys(): IterableIterator<string> {
    return this.#views.keys();
  }

  /** The namespaces that hold a cached policy. */
  namespaces(): Set<string> {
    return new Set([...this.#views.values()].map((view) => view.namespace));
  }

  upsert(object: EmbeddingPolicyObject): void {
    const { distributor, publisher, writer, log } = this.#options;
    const view = policyView(object);
    if (view === undefined) return;
    const current = this.#views.get(view.key);
    // An event older than what a status write already showed: generations only grow.
    if (current !== undefined && current.uid === view.uid && view.generation < current.generation) return;
    this.#views.set(view.key, view);
    if (current !== undefined && current.uid !== view.uid) distributor.forget(view.key);
    if (view.verdict.valid) {
      distributor.setDesired(view.key, { name: view.name, hash: view.verdict.hash, spec: view.verdict.spec });
    } else if (current?.generation !== view.generation || current.uid !== view.uid) {
      log.warn('invalid policy not pushed', {
        policy: view.key,
        generation: view.generation,
        problems: view.verdict.problems.join('; '),
      });
    }
    void publisher?.ensure(view.namespace);
    writer.schedule(view.key);
  }

  remove(object: EmbeddingPolicyObject): void {
    const { namespace, name } = object.metadata ?? {};
    if (!namespace || !name) return;
    const key = policyKey(namespace, name);
    this.#views.delete(key);
    this.#options.distributor.deleted(key);
    const selecting = this.#options.pods().filter((pod) => podView(pod)?.policyKey === key).length;
    this.#options.log.warn(
      'policy deleted: it is revoked from its pods, which serve nothing until it is re-created',
      { policy: key, pods: selecting },
    );
  }

  /**
   * A fresher object from the status writer. Only for a policy still cached: a
   * write's answer arriving after the policy's deletion must not bring it back,
   * and a re-created one comes from the informer.
   */
  observe(object: EmbeddingPolicyObject): void {
    const { namespace, name, uid } = object.metadata ?? {};
    if (namespace && name && this.#views.get(policyKey(namespace, name))?.uid === uid) this.upsert(object);
  }
}
