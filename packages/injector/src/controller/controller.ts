// The policy controller: informers on EmbeddingPolicies and injected pods feed
// the distributor (pushes) and the status writer; a Lease decides which replica
// does either. Every replica keeps the caches, so each can answer the webhook's
// bootstrap lookups and sidecars' pulls.
import {
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type V1Pod,
} from '@kubernetes/client-node';
import { GROUP, sidecarPolicySpec, VERSION } from '@veil/core';
import type { CaBundleSource } from '../certs/cabundle.ts';
import { veilLabels } from '../webhook/annotations.ts';
import type { BackoffOptions } from './backoff.ts';
import { type DesiredPolicy, Distributor, type PushEvent } from './distributor.ts';
import { type InformerEvents, type Watched, watchResource } from './informers.ts';
import type { ControllerKey } from './keys.ts';
import { LeaderElector } from './leader.ts';
import { type Log, silentLog } from './log.ts';
import { type PodView, podResource, podView } from './pods.ts';
import {
  type EmbeddingPolicyObject,
  type PolicyView,
  policyKey,
  policyKeyParts,
  policyPlural,
  policyResource,
  policyView,
} from './policies.ts';
import { KeyPublisher } from './publish.ts';
import type { PolicyLookup } from './pull.ts';
import { SidecarClient } from './push.ts';
import { policyStatus } from './status.ts';
import { type StatusPlan, StatusWriter } from './statuswriter.ts';

export type ControllerOptions = {
  kubeConfig: KubeConfig;
  /** This replica's name: the Lease holder and the `sub` of its push tokens. */
  identity: string;
  key: ControllerKey;
  /** The injector's own namespace, where the Lease lives. */
  namespace: string;
  /** Namespaces watched; empty or absent means all. */
  namespaces?: readonly string[];
  /** The ConfigMap the public key goes into; absent when it is distributed some other way. */
  publishKey?: { name: string; key: string };
  /** The CA bundle of the serving certificate, published beside the key for sidecars to trust. */
  caBundle?: CaBundleSource;
  lease?: { name?: string; durationSeconds?: number; renewIntervalMs?: number };
  push?: {
    debounceMs?: number;
    maxDebounceMs?: number;
    timeoutMs?: number;
    concurrency?: number;
    resyncMs?: number;
    retry?: BackoffOptions;
  };
  log?: Log;
  /** Sees every push and its outcome (metrics, tests). */
  onPush?(event: PushEvent): void;
  /** Called when this replica wins or loses the Lease. */
  onLeadershipChange?(leading: boolean): void;
};

export type Controller = {
  /**
   * What the webhook writes into a new pod: `{name, spec}` of the last valid
   * version. Rejects while the policy cache is out of sync: the webhook then
   * refuses the pod (fail closed) rather than admit it on a copy that may be stale.
   */
  bootstrapPolicy(namespace: string, name: string): Promise<object | undefined>;
  /** The last valid version of a policy, as pushed. */
  policy(namespace: string, name: string): DesiredPolicy | undefined;
  /** Whether the policy cache holds what the API server holds (see `policy`). */
  policiesInSync(): boolean;
  /** What the pull endpoint answers: the last valid version, a policy known not to exist, or neither. */
  lookup(namespace: string, name: string): Promise<PolicyLookup>;
  /** An injected pod, as the informer last saw it; undefined when it is not one. */
  injectedPod(namespace: string, name: string): V1Pod | undefined;
  isLeader(): boolean;
  /** Stops pushing at once; `release` (default true) hands the Lease back. */
  stop(options?: { release?: boolean }): Promise<void>;
};

/**
 * Informer events of injected pods, turned into the distributor's push targets.
 * The informer's cache is keyed by namespace/name: a pod deleted and re-created
 * while the watch was down comes back from the relist as an update carrying a
 * new UID, with no delete for the old one, which would otherwise stay a target
 * for good.
 */
export function podTargets(
  distributor: Pick<Distributor, 'upsertPod' | 'removePod'>,
  onTarget: (view: PodView) => void,
): InformerEvents<V1Pod> {
  const uids = new Map<string, string>();
  const untrack = (pod: V1Pod) => {
    const key = `${pod.metadata?.namespace}/${pod.metadata?.name}`;
    const uid = uids.get(key);
    if (uid === undefined) return;
    uids.delete(key);
    distributor.removePod(uid);
  };
  return {
    upsert(pod) {
      const view = podView(pod);
      if (view === undefined) return untrack(pod);
      const key = `${view.namespace}/${view.name}`;
      const previous = uids.get(key);
      if (previous !== undefined && previous !== view.uid) distributor.removePod(previous);
      uids.set(key, view.uid);
      distributor.upsertPod(view);
      onTarget(view);
    },
    remove: untrack,
  };
}

const outOfSync = 'the policy cache is not in sync with the API server';

/** Resolves once both caches hold a full list, then campaigns for the Lease. */
export async function startController(options: ControllerOptions): Promise<Controller> {
  const log = options.log ?? silentLog;
  const { kubeConfig } = options;
  const views = new Map<string, PolicyView>();
  const client = new SidecarClient({
    key: options.key,
    identity: options.identity,
    timeoutMs: options.push?.timeoutMs,
  });

  const objects = kubeConfig.makeApiClient(CustomObjectsApi);
  const goneAsked = new Map<string, Promise<boolean>>();
  /**
   * Whether the API server itself says the policy does not exist. A cache can
   * lack a policy that exists (its watch down or behind, another replica's
   * admission ahead of this one), so nothing is revoked, and no sidecar told to
   * drop its policy, on this replica's cache alone.
   */
  async function confirmedGone(key: string): Promise<boolean> {
    if (views.has(key) || !policies?.synced()) return false;
    // Every pod of a deleted policy asks at once: they share the request under way.
    let asking = goneAsked.get(key);
    if (asking === undefined) {
      asking = apiServerSaysGone(key).finally(() => goneAsked.delete(key));
      goneAsked.set(key, asking);
    }
    return asking;
  }

  async function apiServerSaysGone(key: string): Promise<boolean> {
    try {
      await objects.getNamespacedCustomObject({
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

  const distributor = new Distributor({
    client,
    ...options.push,
    policyExists: async (key) => !(await confirmedGone(key)),
    cacheInSync: () => policies?.synced() ?? false,
    onPodChange: (key) => writer.schedule(key),
    onPush: (event) => {
      if (event.outcome.kind !== 'ack') {
        log.warn('push not acknowledged', {
          pod: `${event.pod.namespace}/${event.pod.name}`,
          policy: event.pod.policyKey,
          hash: event.hash,
          outcome: event.outcome.kind,
          reason: event.outcome.reason,
        });
      }
      options.onPush?.(event);
    },
    onRevoke: (event) => {
      const fields = {
        pod: `${event.pod.namespace}/${event.pod.name}`,
        policy: event.pod.policyKey,
        outcome: event.outcome.kind,
      };
      if (event.outcome.kind === 'ack') log.info('deleted policy revoked', fields);
      else log.warn('revocation not acknowledged', { ...fields, reason: event.outcome.reason });
    },
  });

  const plan = (key: string): StatusPlan => {
    const view = views.get(key);
    if (view === undefined) return { kind: 'gone' };
    const pods = distributor.podsOf(key);
    if (pods.some((p) => p.unchecked)) return { kind: 'wait' };
    return {
      kind: 'write',
      namespace: view.namespace,
      name: view.name,
      resourceVersion: view.resourceVersion,
      status: policyStatus({ view, enforcedHash: distributor.desired(key)?.hash, pods, now: new Date() }),
      stored: view.status,
    };
  };

  const writer = new StatusWriter({
    api: kubeConfig.makeApiClient(CustomObjectsApi),
    plan,
    // Only for a policy still cached: a write's answer arriving after the
    // policy's deletion must not bring it back, and a re-created one comes
    // from the informer.
    observe: (object) => {
      const { namespace, name, uid } = object.metadata ?? {};
      if (namespace && name && views.get(policyKey(namespace, name))?.uid === uid) upsertPolicy(object);
    },
    log,
  });

  const publisher =
    options.publishKey === undefined
      ? undefined
      : new KeyPublisher({
          api: kubeConfig.makeApiClient(CoreV1Api),
          publicJwk: options.key.publicJwk,
          ...options.publishKey,
          caBundle: options.caBundle,
          log,
        });

  function upsertPolicy(object: EmbeddingPolicyObject): void {
    const view = policyView(object);
    if (view === undefined) return;
    const current = views.get(view.key);
    // An event older than what a status write already showed: generations only grow.
    if (current !== undefined && current.uid === view.uid && view.generation < current.generation) return;
    views.set(view.key, view);
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

  function removePolicy(object: EmbeddingPolicyObject): void {
    const { namespace, name } = object.metadata ?? {};
    if (!namespace || !name) return;
    const key = policyKey(namespace, name);
    views.delete(key);
    distributor.deleted(key);
    const selecting = (pods?.list() ?? []).filter((pod) => podView(pod)?.policyKey === key).length;
    log.warn('policy deleted: it is revoked from its pods, which serve nothing until it is re-created', {
      policy: key,
      pods: selecting,
    });
  }

  const namespaces = options.namespaces ?? [];
  const informerErrors = (what: string) => (error: unknown) =>
    log.warn('watch failed; restarting', {
      resource: what,
      error: String((error as Error)?.message ?? error),
    });
  let policies: Watched<EmbeddingPolicyObject> | undefined;
  let pods: Watched<V1Pod> | undefined;
  try {
    policies = await watchResource(kubeConfig, policyResource(kubeConfig), namespaces, {
      upsert: upsertPolicy,
      remove: removePolicy,
      error: informerErrors('embeddingpolicies'),
    });
    const targets = {
      upsertPod: (view: PodView) => distributor.upsertPod(view),
      removePod(uid: string) {
        distributor.removePod(uid);
        client.forget(uid);
      },
    };
    pods = await watchResource(kubeConfig, podResource(kubeConfig), namespaces, {
      ...podTargets(targets, (view) => void publisher?.ensure(view.namespace)),
      error: informerErrors('pods'),
    });
  } catch (error) {
    await policies?.stop();
    throw error;
  }

  const knownNamespaces = (): Set<string> => {
    const found = new Set([...views.values()].map((view) => view.namespace));
    for (const pod of pods?.list() ?? []) if (pod.metadata?.namespace) found.add(pod.metadata.namespace);
    return found;
  };

  const elector = new LeaderElector({
    api: kubeConfig.makeApiClient(CoordinationV1Api),
    namespace: options.namespace,
    name: options.lease?.name,
    identity: options.identity,
    leaseDurationSeconds: options.lease?.durationSeconds,
    renewIntervalMs: options.lease?.renewIntervalMs,
    log,
    onStartedLeading: () => {
      distributor.activate();
      writer.activate();
      publisher?.activate(knownNamespaces());
      for (const key of views.keys()) writer.schedule(key);
      options.onLeadershipChange?.(true);
    },
    onStoppedLeading: () => {
      distributor.deactivate();
      writer.deactivate();
      publisher?.deactivate();
      options.onLeadershipChange?.(false);
    },
  });
  elector.start();

  // A ConfigMap deleted or edited by hand comes back without waiting for the next event.
  const republish = setInterval(() => {
    if (elector.isLeader()) publisher?.recheck(knownNamespaces());
  }, options.push?.resyncMs ?? 60_000);
  republish.unref();
  // A new CA bundle (a rotation, a first pass) goes to every namespace at once.
  const unsubscribe = options.caBundle?.onChange(() => {
    if (elector.isLeader()) publisher?.activate(knownNamespaces());
  });

  return {
    async bootstrapPolicy(namespace, name) {
      // A cache that missed events may hold a policy since edited or deleted:
      // the webhook then refuses the pod rather than write that copy into it.
      if (!policies?.synced())
        throw new Error(`${outOfSync}: EmbeddingPolicy ${namespace}/${name} cannot be vouched for now`);
      const desired = distributor.desired(policyKey(namespace, name));
      return desired === undefined
        ? undefined
        : { name: desired.name, spec: sidecarPolicySpec(desired.spec) };
    },
    policy: (namespace, name) => distributor.desired(policyKey(namespace, name)),
    policiesInSync: () => policies?.synced() ?? false,
    async lookup(namespace, name) {
      const key = policyKey(namespace, name);
      if (namespaces.length > 0 && !namespaces.includes(namespace))
        return { kind: 'unavailable', reason: `this controller does not watch namespace ${namespace}` };
      // Out of sync, the cache vouches neither way: what it holds may have been edited or deleted.
      if (!policies?.synced()) return { kind: 'unavailable', reason: outOfSync };
      const desired = distributor.desired(key);
      if (desired !== undefined) return { kind: 'valid', policy: desired };
      if (views.has(key))
        return { kind: 'unavailable', reason: `this replica knows no valid version of ${key}` };
      if (!(await confirmedGone(key)))
        return { kind: 'unavailable', reason: `this replica has not seen ${key} yet` };
      return { kind: 'absent' };
    },
    injectedPod: (namespace, name) => {
      const pod = pods?.get(namespace, name);
      return pod?.metadata?.labels?.[veilLabels.injected] === 'true' ? pod : undefined;
    },
    isLeader: () => elector.isLeader(),
    async stop(stopOptions = {}) {
      clearInterval(republish);
      unsubscribe?.();
      await elector.stop(stopOptions);
      distributor.deactivate();
      writer.deactivate();
      await Promise.all([policies?.stop(), pods?.stop()]);
      await client.close();
    },
  };
}
