// Pod metadata stays mutable after creation, and the sidecar reads its bootstrap
// policy from a file the kubelet projects from an annotation. On an injected pod,
// Veil's own marks therefore change through the injector only: an UPDATE that edits
// them is refused. So is one that edits `veil.dev/policy`: the controller pushes
// the policy it names, while the sidecar pulls the one it was injected with.
// A container's image also stays mutable (`kubectl set image pod/…`), so the
// sidecar container is held as it was injected: another image would be another
// proxy, one that need not enforce or record anything.
// The controller's key and CA bundle are what the sidecar trusts pushes and the
// controller by: only the injector's own identity changes them, as it does when
// the controller's key or CA rotates. Anyone else could make the sidecar take
// their pushes, or talk to a controller of their own.
import { isDeepStrictEqual } from 'node:util';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { podAnnotations, podContainers, podLabels, veilAnnotations, veilLabels } from './annotations.ts';
import { sidecarNames } from './sidecar.ts';
import { trustAnnotationKeys } from './trust.ts';

const guardedAnnotations = [
  veilAnnotations.bootstrapPolicy,
  veilAnnotations.status,
  veilAnnotations.policy,
] as const;

/** Who asks for an update, and the usernames the trust annotations may be changed by. */
export type Updater = { username: string | undefined; trustWriters: readonly string[] };

/** A denial message when an update touches Veil's marks on an injected pod, or forges them. */
export function vetPodUpdate(oldPod: V1Pod, newPod: V1Pod, updater: Updater): string | undefined {
  if (podLabels(oldPod)[veilLabels.injected] !== 'true') {
    // The controller finds injected pods by this label alone and pushes to them:
    // only injection puts it on a pod.
    return podLabels(newPod)[veilLabels.injected] === 'true'
      ? `label ${veilLabels.injected} is set by the Veil injector and cannot be added to a pod it did not inject`
      : undefined;
  }
  if (podLabels(newPod)[veilLabels.injected] !== 'true') {
    return `label ${veilLabels.injected} cannot be removed from an injected pod`;
  }
  const before = podAnnotations(oldPod);
  const after = podAnnotations(newPod);
  const mayWriteTrust = updater.username !== undefined && updater.trustWriters.includes(updater.username);
  const guarded = mayWriteTrust ? guardedAnnotations : [...guardedAnnotations, ...trustAnnotationKeys];
  const changed = guarded.find((key) => before[key] !== after[key]);
  if (changed !== undefined) return `annotation ${changed} is set by the Veil injector and cannot be changed`;
  return isDeepStrictEqual(veilContainers(oldPod), veilContainers(newPod))
    ? undefined
    : `container ${sidecarNames.container} is the Veil sidecar and cannot be changed`;
}

/** Wherever the sidecar went: an init container (native) or a regular one. */
function veilContainers(pod: V1Pod): V1Container[] {
  return podContainers(pod).filter((c) => c.name === sidecarNames.container);
}
