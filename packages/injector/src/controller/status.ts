// The status an EmbeddingPolicy should show, from what the controller knows:
// whether the spec is valid, and how many selected pods enforce it. Pure, so
// the wording operators read is tested without a cluster.
import type { PodSync } from './distributor.ts';
import type { PolicyStatus, PolicyView } from './policies.ts';

type Condition = NonNullable<PolicyStatus['conditions']>[number];

export const readyConditionType = 'Ready';

export type StatusInput = {
  view: PolicyView;
  /**
   * The hash sidecars should enforce: the spec's own when valid, else the last
   * valid one this replica saw, which it also gives new pods; undefined when it
   * saw none since it started.
   */
  enforcedHash: string | undefined;
  pods: readonly PodSync[];
  now: Date;
};

// Kept well under what kubectl prints comfortably; the full list is in the log.
const maxListed = 5;
const maxMessageLength = 2000;

export function policyStatus(input: StatusInput): PolicyStatus {
  const { view, pods } = input;
  const hash = view.verdict.valid ? view.verdict.hash : (input.enforcedHash ?? view.status?.contentHash);
  const inSync = hash === undefined ? 0 : pods.filter((p) => isInSync(p, hash)).length;
  const ready = readyCondition(input, hash, inSync);
  const others = (view.status?.conditions ?? []).filter((c) => c.type !== readyConditionType);
  return {
    observedGeneration: view.generation,
    ...(hash === undefined ? {} : { contentHash: hash }),
    podsInSync: inSync,
    podsTotal: pods.length,
    sync: `${inSync}/${pods.length}`,
    conditions: [...others, ready],
  };
}

function readyCondition(input: StatusInput, hash: string | undefined, inSync: number): Condition {
  const { view, pods } = input;
  let status: Condition['status'];
  let reason: string;
  let message: string;
  if (!view.verdict.valid) {
    status = 'False';
    reason = 'Invalid';
    const kept = hash === undefined ? 'their previous policy' : `the previous version ${hash}`;
    const problems = view.verdict.problems.join('; ');
    // The last valid spec lives in replicas' memory only: one that started after
    // the spec went bad has none to write into new pods or answer their pulls
    // with. Another replica may have it, hence "may".
    message =
      input.enforcedHash === undefined
        ? `the spec is invalid, so it is not pushed; running pods keep ${kept}, but new pods may start without a policy until the spec is valid, as the controller has seen no valid version since it started: ${problems}`
        : `the spec is invalid, so it is not pushed and sidecars keep ${kept}: ${problems}`;
  } else if (inSync === pods.length) {
    status = 'True';
    reason = 'Synced';
    message =
      pods.length === 0
        ? `valid (${hash}); no running injected pod selects it`
        : `all ${pods.length} pods enforce ${hash}`;
  } else {
    status = 'False';
    reason = 'Syncing';
    const lagging = pods.filter((p) => hash === undefined || !isInSync(p, hash));
    const listed = lagging
      .slice(0, maxListed)
      .map((p) => (p.problem === undefined ? p.name : `${p.name} (${p.problem})`));
    const more = lagging.length > maxListed ? ` and ${lagging.length - maxListed} more` : '';
    message = `${inSync} of ${pods.length} pods enforce ${hash}; waiting for ${listed.join(', ')}${more}`;
  }
  const previous = view.status?.conditions?.find((c) => c.type === readyConditionType);
  return {
    type: readyConditionType,
    status,
    reason,
    message: clip(message),
    observedGeneration: view.generation,
    lastTransitionTime:
      previous !== undefined && previous.status === status
        ? previous.lastTransitionTime
        : kubeTime(input.now),
  };
}

// A pod with a problem is not counted even when its last known hash matches:
// that hash is what it enforced before something went wrong, not what it does now.
function isInSync(pod: PodSync, hash: string): boolean {
  return pod.hash === hash && pod.problem === undefined;
}

/** metav1.Time: RFC 3339 in seconds. */
function kubeTime(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function clip(message: string): string {
  return message.length <= maxMessageLength ? message : `${message.slice(0, maxMessageLength - 1)}…`;
}
