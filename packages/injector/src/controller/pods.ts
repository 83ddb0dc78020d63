// Injected pods as push targets: which policy each enforces and where its
// sidecar's admin port answers.
import { CoreV1Api, type KubeConfig, type V1Container, type V1Pod } from '@kubernetes/client-node';
import { podContainers, veilAnnotations, veilLabels } from '../webhook/annotations.ts';
import { sidecarNames } from '../webhook/sidecar.ts';
import type { WatchedResource } from './informers.ts';
import { policyKey } from './policies.ts';

/** The sidecar's admin port when the pod names none (the sidecar's own default). */
export const defaultAdminPort = 15_090;

export type PodView = {
  uid: string;
  namespace: string;
  name: string;
  /** `<namespace>/<policy>`: the pod's own namespace and its `veil.dev/policy`. */
  policyKey: string;
  /** `https://<pod IP>:<veil-admin port>`; undefined until the pod has an IP. */
  adminUrl: string | undefined;
  /**
   * Changes when the sidecar may have restarted (its restart count) or moved:
   * what it enforces must then be asked again.
   */
  incarnation: string;
  /**
   * Deleted and draining: its sidecar still answers callers until it stops, so
   * it still gets new versions and revocations, but it no longer counts
   * towards a policy's status.
   */
  terminating: boolean;
};

/** The push target a pod is, or undefined for one that is gone or finished. */
export function podView(pod: V1Pod): PodView | undefined {
  const { uid, namespace, name, annotations, labels, deletionTimestamp } = pod.metadata ?? {};
  if (!uid || !namespace || !name) return undefined;
  if (labels?.[veilLabels.injected] !== 'true') return undefined;
  // A finished pod's sidecar is gone.
  const phase = pod.status?.phase;
  if (phase === 'Succeeded' || phase === 'Failed') return undefined;
  const ip = pod.status?.podIP;
  const restarts = sidecarStatus(pod)?.restartCount ?? 0;
  return {
    uid,
    namespace,
    name,
    policyKey: policyKey(namespace, annotations?.[veilAnnotations.policy] || 'default'),
    adminUrl: ip ? `https://${ip.includes(':') ? `[${ip}]` : ip}:${adminPort(pod)}` : undefined,
    incarnation: `${ip ?? ''}#${restarts}`,
    terminating: Boolean(deletionTimestamp),
  };
}

function adminPort(pod: V1Pod): number {
  const containers = podContainers(pod);
  // The proxy's own port first; a port of that name elsewhere would be an odd pod.
  const ordered = [
    ...containers.filter((c) => c.name === sidecarNames.container),
    ...containers.filter((c) => c.name !== sidecarNames.container),
  ];
  for (const container of ordered) {
    const port = container.ports?.find((p) => p.name === sidecarNames.adminPort);
    if (port) return port.containerPort;
  }
  return defaultAdminPort;
}

function sidecarStatus(pod: V1Pod) {
  return [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])].find(
    (s) => s.name === sidecarNames.container,
  );
}

/** Where informers list and watch injected pods. */
export function podResource(kubeConfig: KubeConfig): WatchedResource<V1Pod> {
  const api = kubeConfig.makeApiClient(CoreV1Api);
  const labelSelector = `${veilLabels.injected}=true`;
  return {
    labelSelector,
    path: (namespace) => (namespace ? `/api/v1/namespaces/${namespace}/pods` : '/api/v1/pods'),
    list: (namespace) =>
      namespace
        ? api.listNamespacedPod({ namespace, labelSelector })
        : api.listPodForAllNamespaces({ labelSelector }),
  };
}
