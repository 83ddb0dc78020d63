// The ways into a running sidecar that do not change the pod's spec: a process
// started in it (`kubectl exec`, `attach`), a debug container that shares its
// process namespace or mounts its volumes (`kubectl debug`), and a Binding,
// whose labels and annotations the API server copies onto the pod. Each would
// hand over the S3 credentials and the signing key, or Veil's marks, so on an
// injected pod each is refused; the model's containers stay open to all three.
import type { V1EphemeralContainer, V1Pod } from '@kubernetes/client-node';
import { podLabels, veilLabels } from './annotations.ts';
import { nodeReachOf, sidecarVolumeUsed } from './conflicts.ts';
import { sidecarNames } from './sidecar.ts';
import { vetPodUpdate } from './tamper.ts';

/**
 * The container an exec or attach reaches. Without a name, the API server picks
 * the pod's only regular container and refuses the request when there are more;
 * the default-container annotation is kubectl's, which names its choice in the
 * request.
 */
export function connectTarget(pod: V1Pod, container: string | undefined): string | undefined {
  if (container) return container;
  const containers = pod.spec?.containers ?? [];
  return containers.length === 1 ? containers[0]?.name : undefined;
}

/** A denial message when an exec or attach would run in, or read from, the sidecar. */
export function vetConnect(
  pod: V1Pod,
  subResource: string,
  container: string | undefined,
): string | undefined {
  if (!isInjected(pod)) return undefined;
  return connectTarget(pod, container) === sidecarNames.container
    ? `pods/${subResource} into container ${sidecarNames.container} is refused: it is the Veil sidecar, which holds the audit signing key and the S3 credentials`
    : undefined;
}

/** A denial message when a debug container added to an injected pod reaches into the sidecar. */
export function vetEphemeralContainers(oldPod: V1Pod, newPod: V1Pod): string | undefined {
  if (!isInjected(oldPod)) return undefined;
  const existing = new Set((oldPod.spec?.ephemeralContainers ?? []).map((c) => c.name));
  for (const container of newPod.spec?.ephemeralContainers ?? []) {
    if (existing.has(container.name)) continue;
    const refusal = reachesSidecar(container);
    if (refusal !== undefined) return `ephemeral container ${container.name} ${refusal}`;
  }
  return undefined;
}

function reachesSidecar(container: V1EphemeralContainer): string | undefined {
  if (container.targetContainerName === sidecarNames.container) {
    return `targets ${sidecarNames.container}, the Veil sidecar: it would see the sidecar's processes, their environment and files`;
  }
  const mounted = sidecarVolumeUsed(container);
  if (mounted !== undefined) return `mounts ${mounted}, a volume of the Veil sidecar`;
  // A debug container joins a running pod past the create-time checks: a
  // privileged one (kubectl debug --profile=sysadmin) reaches the node's copy
  // of the sidecar's volumes.
  return nodeReachOf(container);
}

export type BindingMetadata = {
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
};

/** A denial message when a Binding would change Veil's marks on the pod it binds, or forge them. */
export function vetBinding(pod: V1Pod, binding: BindingMetadata): string | undefined {
  // What the API server stores: the binding's labels and annotations over the pod's.
  const bound: V1Pod = {
    ...pod,
    metadata: {
      ...pod.metadata,
      labels: { ...pod.metadata?.labels, ...binding.labels },
      annotations: { ...pod.metadata?.annotations, ...binding.annotations },
    },
  };
  // The injector changes the trust annotations by patching the pod, never by a binding.
  return vetPodUpdate(pod, bound, { username: undefined, trustWriters: [] });
}

function isInjected(pod: V1Pod): boolean {
  return podLabels(pod)[veilLabels.injected] === 'true';
}
