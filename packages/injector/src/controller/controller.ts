// The policy controller: informers on EmbeddingPolicies and injected pods feed
// the distributor (pushes) and the status writer; a Lease decides which replica
// does either. Every replica keeps the caches, so each can answer the webhook's
// bootstrap lookups and sidecars' pulls.
//
// This file wires the parts: the watches, the policy cache, the confirmation
// that a policy is gone, the distributor, the status writer and its plan, the
// key publisher, the trust patcher, the leader's term, and the answers to the
// webhook and pulls.
import {
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type V1Pod,
} from '@kubernetes/client-node';
import type { CaBundleSource } from '../certs/cabundle.ts';
import { currentTrust } from '../webhook/trust.ts';
import type { BackoffOptions } from './backoff.ts';
import { type DesiredPolicy, Distributor, type PushEvent } from './distributor.ts';
import { GoneConfirmation } from './gone-confirmation.ts';
import type { ControllerKey } from './keys.ts';
import { LeaderElector } from './leader.ts';
import { leaderTerm } from './leader-term.ts';
import { type Log, silentLog } from './log.ts';
import { podTargets } from './pod-targets.ts';
import type { PodView } from './pods.ts';
import { policyKey } from './policies.ts';
import { PolicyAnswers } from './policy-answers.ts';
import { PolicyCache } from './policy-cache.ts';
import { KeyPublisher } from './publish.ts';
import type { PolicyLookup } from './pull.ts';
import { SidecarClient } from './push.ts';
import { logPush, logRevoke } from './push-log.ts';
import { republishWhileLeading } from './republish.ts';
import { statusPlan } from './status-plan.ts';
import { StatusWriter } from './statuswriter.ts';
import { TrustPatcher } from './trust.ts';
import { Watches } from './watches.ts';

export type ControllerOptions = {
  kubeConfig: KubeConfig;
  /** This replica's name: the Lease holder and the `sub` of its push tokens. */
  identity: string;
  key: ControllerKey;
  /** The injector's own namespace, where the Lease lives. */
  namespace: string;
  /** Namespaces watched; empty or absent means all. */
  namespaces?: readonly string[];
  /**
   * Namespaces never injected, whose pods the webhooks do not see: one labelled
   * injected there was labelled by hand, and gets no push, certificate or place
   * in a policy's status.
   */
  excludedNamespaces?: readonly string[];
  /**
   * The ConfigMap a copy of the public key goes into, for pods injected by earlier
   * releases; absent when it is distributed some other way.
   */
  publishKey?: { name: string; key: string };
  /** The CA bundle of the serving certificate, patched into injected pods for sidecars to trust. */
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

/** Resolves once both caches hold a full list, then campaigns for the Lease. */
export async function startController(options: ControllerOptions): Promise<Controller> {
  const log = options.log ?? silentLog;
  const { kubeConfig } = options;
  const namespaces = options.namespaces ?? [];
  const client = new SidecarClient({
    key: options.key,
    identity: options.identity,
    timeoutMs: options.push?.timeoutMs,
  });
  const watches = new Watches(kubeConfig, namespaces, options.excludedNamespaces ?? [], log);
  const gone: GoneConfirmation = new GoneConfirmation({
    api: kubeConfig.makeApiClient(CustomObjectsApi),
    cached: (key) => cache.has(key),
    inSync: () => watches.policiesSynced(),
  });

  const distributor: Distributor = new Distributor({
    client,
    ...options.push,
    policyExists: async (key) => !(await gone.confirmedGone(key)),
    cacheInSync: () => watches.policiesSynced(),
    onPodChange: (key) => writer.schedule(key),
    onPush: (event) => {
      logPush(log, event);
      options.onPush?.(event);
    },
    onRevoke: (event) => logRevoke(log, event),
  });
  const writer = new StatusWriter({
    api: kubeConfig.makeApiClient(CustomObjectsApi),
    plan: (key) => statusPlan(key, cache.get(key), distributor),
    observe: (object) => cache.observe(object),
    log,
  });
  const publisher = keyPublisher(options, log);
  const trust = new TrustPatcher({
    api: kubeConfig.makeApiClient(CoreV1Api),
    trust: () => currentTrust(options.key.publicJwk, options.caBundle),
    log,
  });
  const cache: PolicyCache = new PolicyCache({
    distributor,
    publisher,
    writer,
    pods: () => watches.pods(),
    log,
  });

  const targets = {
    upsertPod: (view: PodView) => distributor.upsertPod(view),
    removePod(uid: string) {
      distributor.removePod(uid);
      client.forget(uid);
    },
  };
  await watches.start(
    cache,
    podTargets(targets, (view) => {
      void publisher?.ensure(view.namespace);
      const pod = watches.injectedPod(view.namespace, view.name);
      if (pod !== undefined) void trust.ensure(pod);
    }),
  );

  const knownNamespaces = (): Set<string> => {
    const found = cache.namespaces();
    for (const pod of watches.pods()) if (pod.metadata?.namespace) found.add(pod.metadata.namespace);
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
    ...leaderTerm({
      distributor,
      writer,
      publisher,
      trust,
      pods: () => watches.pods(),
      knownNamespaces,
      policyKeys: () => cache.keys(),
      onLeadershipChange: (leading) => options.onLeadershipChange?.(leading),
    }),
  });
  elector.start();
  const stopRepublishing = republishWhileLeading({
    publisher,
    trust,
    caBundle: options.caBundle,
    isLeader: () => elector.isLeader(),
    knownNamespaces,
    pods: () => watches.pods(),
    intervalMs: options.push?.resyncMs ?? 60_000,
  });

  const answers = new PolicyAnswers({
    namespaces,
    inSync: () => watches.policiesSynced(),
    distributor,
    cache,
    gone,
  });
  return {
    bootstrapPolicy: (namespace, name) => answers.bootstrapPolicy(namespace, name),
    policy: (namespace, name) => distributor.desired(policyKey(namespace, name)),
    policiesInSync: () => watches.policiesSynced(),
    lookup: (namespace, name) => answers.lookup(namespace, name),
    injectedPod: (namespace, name) => watches.injectedPod(namespace, name),
    isLeader: () => elector.isLeader(),
    async stop(stopOptions = {}) {
      stopRepublishing();
      await elector.stop(stopOptions);
      distributor.deactivate();
      writer.deactivate();
      await watches.stop();
      await client.close();
    },
  };
}

function keyPublisher(options: ControllerOptions, log: Log): KeyPublisher | undefined {
  if (options.publishKey === undefined) return undefined;
  return new KeyPublisher({
    api: options.kubeConfig.makeApiClient(CoreV1Api),
    publicJwk: options.key.publicJwk,
    ...options.publishKey,
    caBundle: options.caBundle,
    log,
  });
}
