// Pods the sidecar cannot join as it is: names it needs are taken, its ports are in
// use, another container would mount its volumes, a port would be published on the
// node, it would share the node's network, or other processes could see into it.
// Refused, never patched around, so a pod that must be audited does not start
// half-guarded. A pod's mounts and ports cannot change after creation, so refusing
// them here, and in the debug containers an update adds (access.ts), is enough.
import type { V1Container, V1EphemeralContainer, V1Pod, V1PodSpec } from '@kubernetes/client-node';
import { podContainers } from './annotations.ts';
import type { InjectionSettings } from './settings.ts';
import { sidecarNames, sidecarVolumeNames } from './sidecar.ts';
import type { Upstream } from './upstream.ts';

const reservedPortNames: ReadonlySet<string> = new Set([
  sidecarNames.upstreamPort,
  sidecarNames.proxyPort,
  sidecarNames.adminPort,
]);
const reservedVolumeNames: ReadonlySet<string> = new Set(Object.values(sidecarVolumeNames));

/** What a container names of the pod's volumes, regular, init or ephemeral alike. */
export type VolumeUser = Pick<V1Container | V1EphemeralContainer, 'name' | 'volumeMounts' | 'volumeDevices'>;

export function findConflict(pod: V1Pod, settings: InjectionSettings): string | undefined {
  const spec = pod.spec;
  const shared = findSharedNamespace(spec);
  if (shared !== undefined) return shared;
  for (const container of podContainers(pod)) {
    const refusal = findContainerConflict(container, settings);
    if (refusal !== undefined) return refusal;
  }
  for (const container of [...podContainers(pod), ...(spec?.ephemeralContainers ?? [])]) {
    const volume = sidecarVolumeUsed(container);
    if (volume !== undefined) {
      return `container "${container.name}" mounts volume "${volume}", a volume of the Veil sidecar that only the sidecar may mount`;
    }
  }
  const volume = (spec?.volumes ?? []).find((v) => reservedVolumeNames.has(v.name));
  return volume === undefined ? undefined : `volume name "${volume.name}" is reserved for the Veil sidecar`;
}

/**
 * The sidecar volume a container mounts or attaches as a device, if any. In
 * another container with the volume left out of the pod, injection would add the
 * volume and the mount would resolve, handing that container the signing key,
 * the unshipped spool or the controller token.
 */
export function sidecarVolumeUsed(container: VolumeUser): string | undefined {
  const names = [...(container.volumeMounts ?? []), ...(container.volumeDevices ?? [])].map((v) => v.name);
  return names.find((name) => reservedVolumeNames.has(name));
}

/**
 * A port name the proxy takes over must lead to the proxy alone: Kubernetes lets
 * another container declare the same name, and a Service targeting it could then
 * reach that container instead.
 */
export function findPortNameClash(pod: V1Pod, upstream: Upstream): string | undefined {
  if (upstream.name === undefined) return undefined;
  const model = pod.spec?.containers[upstream.containerIndex];
  const other = podContainers(pod).find(
    (c) => c !== model && (c.ports ?? []).some((p) => p.name === upstream.name),
  );
  return other === undefined
    ? undefined
    : `containers "${upstream.container}" and "${other.name}" both declare a port named "${upstream.name}": the proxy takes the name over from "${upstream.container}", and a Service targeting it could reach "${other.name}" instead; rename one of them`;
}

function findContainerConflict(container: V1Container, settings: InjectionSettings): string | undefined {
  if (container.name === sidecarNames.container) {
    return `container name "${container.name}" is reserved for the Veil sidecar`;
  }
  for (const port of container.ports ?? []) {
    if (port.containerPort === settings.proxyPort || port.containerPort === settings.adminPort) {
      return `container "${container.name}" declares port ${port.containerPort}, which the Veil sidecar listens on`;
    }
    if (port.name !== undefined && reservedPortNames.has(port.name)) {
      return `container "${container.name}" declares a port named "${port.name}", a name reserved for the Veil sidecar`;
    }
    // The containers share the pod's network: a port published on the node reaches
    // whatever listens on it in the pod, the model included, around the proxy.
    if (port.hostPort) {
      return `container "${container.name}" publishes port ${port.containerPort} on the node (hostPort ${port.hostPort}): pods with a hostPort cannot be injected, it would reach the pod around the proxy`;
    }
  }
  return undefined;
}

function findSharedNamespace(spec: V1PodSpec | undefined): string | undefined {
  if (spec?.hostNetwork === true) {
    return "pods on the host network cannot be injected: the proxy's ports would be the node's";
  }
  // A process that sees the sidecar's and runs as its user (the common nonroot UID
  // of distroless images) reads its S3 credentials and keys through /proc/<pid>.
  if (spec?.hostPID === true) {
    return "pods in the node's process namespace (hostPID) cannot be injected: other processes could read the sidecar's environment and files, its S3 credentials and keys";
  }
  if (spec?.shareProcessNamespace === true) {
    return "pods that share a process namespace (shareProcessNamespace) cannot be injected: the other containers could read the sidecar's environment and files, its S3 credentials and keys";
  }
  return undefined;
}
