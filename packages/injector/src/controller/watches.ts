// The controller's two watches, on EmbeddingPolicies and on injected pods, in
// the namespaces it serves. Their events start arriving (the first list) before
// either watch has started: until then each reads as out of sync and empty.
import type { KubeConfig, V1Pod } from '@kubernetes/client-node';
import { veilLabels } from '../webhook/annotations.ts';
import { type InformerEvents, type Watched, watchResource } from './informers.ts';
import type { Log } from './log.ts';
import { podResource } from './pods.ts';
import { type EmbeddingPolicyObject, policyResource } from './policies.ts';

export class Watches {
  readonly #kubeConfig: KubeConfig;
  readonly #namespaces: readonly string[];
  readonly #excluded: ReadonlySet<string>;
  readonly #log: Log;
  /** Pods already warned about, so a relist or a status update does not warn again. */
  readonly #ignored = new Set<string>();
  #policies: Watched<EmbeddingPolicyObject> | undefined;
  #pods: Watched<V1Pod> | undefined;

  /** `namespaces` empty means all; no pod of an `excluded` namespace counts as injected. */
  constructor(kubeConfig: KubeConfig, namespaces: readonly string[], excluded: readonly string[], log: Log) {
    this.#kubeConfig = kubeConfig;
    this.#namespaces = namespaces;
    this.#excluded = new Set(excluded);
    this.#log = log;
  }

  /** Resolves once both caches hold a full list; on a failure, neither keeps watching. */
  async start(policies: InformerEvents<EmbeddingPolicyObject>, pods: InformerEvents<V1Pod>): Promise<void> {
    const kubeConfig = this.#kubeConfig;
    try {
      this.#policies = await watchResource(kubeConfig, policyResource(kubeConfig), this.#namespaces, {
        upsert: (object) => policies.upsert(object),
        remove: (object) => policies.remove(object),
        error: this.#informerErrors('embeddingpolicies'),
      });
      this.#pods = await watchResource(kubeConfig, podResource(kubeConfig), this.#namespaces, {
        upsert: (pod) => (this.#trusted(pod) ? pods.upsert(pod) : this.#ignore(pod, pods)),
        remove: (pod) => {
          this.#ignored.delete(podKey(pod));
          pods.remove(pod);
        },
        error: this.#informerErrors('pods'),
      });
    } catch (error) {
      await this.#policies?.stop();
      throw error;
    }
  }

  /** Whether the policy cache holds what the API server holds. */
  policiesSynced(): boolean {
    return this.#policies?.synced() ?? false;
  }

  pods(): V1Pod[] {
    return (this.#pods?.list() ?? []).filter((pod) => this.#trusted(pod));
  }

  /** An injected pod, as the informer last saw it; undefined when it is not one. */
  injectedPod(namespace: string, name: string): V1Pod | undefined {
    const pod = this.#pods?.get(namespace, name);
    return pod?.metadata?.labels?.[veilLabels.injected] === 'true' && this.#trusted(pod) ? pod : undefined;
  }

  async stop(): Promise<void> {
    await Promise.all([this.#policies?.stop(), this.#pods?.stop()]);
  }

  /** The webhooks never see a pod of an excluded namespace: its label was not put there by injection. */
  #trusted(pod: V1Pod): boolean {
    return !this.#excluded.has(pod.metadata?.namespace ?? '');
  }

  /**
   * An injected pod in a namespace excluded after it was injected still runs its
   * sidecar, now out of policy control: pushes and revocations no longer reach it.
   * The operator is told once per pod, since nothing else shows it.
   */
  #ignore(pod: V1Pod, pods: InformerEvents<V1Pod>): void {
    pods.remove(pod);
    const key = podKey(pod);
    if (this.#ignored.has(key)) return;
    this.#ignored.add(key);
    this.#log.warn(
      'ignoring an injected pod of an excluded namespace: its sidecar gets no policy pushes or revocations',
      {
        namespace: pod.metadata?.namespace,
        pod: pod.metadata?.name,
      },
    );
  }

  #informerErrors(what: string): (error: unknown) => void {
    return (error) =>
      this.#log.warn('watch failed; restarting', {
        resource: what,
        error: String((error as Error)?.message ?? error),
      });
  }
}

/** The uid tells a pod from a later one of the same name, which is warned about again. */
function podKey(pod: V1Pod): string {
  return `${pod.metadata?.namespace}/${pod.metadata?.name}/${pod.metadata?.uid}`;
}
