// Pods the sidecar cannot join as it is: names it needs are taken, its ports are in
// use, it would share the node's network, or other processes could see into it.
// Refused, never patched around, so a pod that must be audited does not start
// half-guarded.
import type { V1Container, V1Pod, V1PodSpec } from '@kubernetes/client-node';
import { podContainers } from './annotations.ts';
import type { InjectionSettings } from './settings.ts';
import { sidecarNames, sidecarVolumeNames } from './sidecar.ts';

const reservedPortNames: ReadonlySet<string> = new Set([
  sidecarNames.upstreamPort,
  sidecarNames.proxyPort,
  sidecarNames.adminPort,
]);
const reservedVolumeNames: ReadonlySet<string> = new Set(Object.values(sidecarVolumeNames));

export function findConflict(pod: V1Pod, settings: InjectionSettings): string | undefined {
  const spec = pod.spec;
  const shared = findSharedNamespace(spec);
  if (shared !== undefined) return shared;
  for (const container of podContainers(pod)) {
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
    }
  }
  const volume = (spec?.volumes ?? []).find((v) => reservedVolumeNames.has(v.name));
  return volume === undefined ? undefined : `volume name "${volume.name}" is reserved for the Veil sidecar`;
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
