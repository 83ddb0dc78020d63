// Injected pods, as the informer reports them, turned into the distributor's
// push targets.
import type { V1Pod } from '@kubernetes/client-node';
import type { Distributor } from './distributor.ts';
import type { InformerEvents } from './informers.ts';
import { type PodView, podView } from './pods.ts';

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
