// What the status writer is to do for one policy, from the cached policy and
// what its pods report to the distributor.
import type { Distributor } from './distributor.ts';
import type { PolicyView } from './policies.ts';
import { policyStatus } from './status.ts';
import type { StatusPlan } from './statuswriter.ts';

export function statusPlan(
  key: string,
  view: PolicyView | undefined,
  distributor: Pick<Distributor, 'podsOf' | 'desired'>,
): StatusPlan {
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
}
