// Pods the sidecar cannot join as it is: names it needs are taken, its ports are in
// use, another container would mount its volumes, a port would be published on the
// node, it would share the node's network, or other processes could see into it.
// Nor pods that reach into the node, where the sidecar's volumes live as plain
// directories, nor pods that choose how the sidecar resolves the names it ships
// records and takes policies from, nor pods deleted faster than it can ship.
// Refused, never patched around, so a pod that must be audited does not start
// half-guarded. A pod's mounts, ports, security settings, DNS settings and host
// aliases cannot change after creation: what is refused here stays refused, but
// for the debug containers an update adds, which access.ts vets.

import type {
  V1Container,
  V1EphemeralContainer,
  V1HostAlias,
  V1Pod,
  V1PodSpec,
} from '@kubernetes/client-node';
import { DEFAULT_AUDIT_CLOSE_GRACE_SECONDS } from '@veil/core';
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

/** What a container asks of the node, regular, init or ephemeral alike. */
export type NodeUser = Pick<V1Container | V1EphemeralContainer, 'securityContext'>;

/**
 * Pod Security "baseline": the capabilities a container may add to the runtime's
 * defaults; any other (SYS_ADMIN, NET_ADMIN, ...) reaches past the container,
 * into the node or around the proxy. SYS_PTRACE besides, which `kubectl debug
 * --target` adds: no container of an injected pod shares a process namespace with
 * the sidecar (shareProcessNamespace is refused, and so is a debug container
 * targeting it), so it traces its own container's processes, or its target's.
 */
const allowedCapabilities: ReadonlySet<string> = new Set([
  'SYS_PTRACE',
  'AUDIT_WRITE',
  'CHOWN',
  'DAC_OVERRIDE',
  'FOWNER',
  'FSETID',
  'KILL',
  'MKNOD',
  'NET_BIND_SERVICE',
  'SETFCAP',
  'SETGID',
  'SETPCAP',
  'SETUID',
  'SYS_CHROOT',
]);

/**
 * Past the close grace: the sidecar's own shutdown takes its close grace plus
 * 7 s (two request drains of 2 s and a 3 s margin, main.ts), and the model may
 * need a moment to stop before the sidecar hears SIGTERM (a native sidecar).
 */
const closeHeadroomSeconds = 10;
/** What Kubernetes gives a pod that sets no terminationGracePeriodSeconds. */
const defaultTerminationGraceSeconds = 30;

export function findConflict(pod: V1Pod, settings: InjectionSettings): string | undefined {
  const spec = pod.spec;
  return (
    findSharedNamespace(spec) ??
    findHostPathVolume(spec) ??
    findContainersConflict(pod, settings) ??
    findNameResolutionConflict(spec, settings) ??
    findShortTerminationGrace(spec, settings) ??
    findSidecarVolumeConflict(pod)
  );
}

function findContainersConflict(pod: V1Pod, settings: InjectionSettings): string | undefined {
  for (const container of podContainers(pod)) {
    const refusal = findContainerConflict(container, settings);
    if (refusal !== undefined) return refusal;
  }
  for (const container of everyContainer(pod)) {
    const reach = nodeReachOf(container);
    if (reach !== undefined) return `container "${container.name}" ${reach}`;
  }
  return undefined;
}

/** Init, regular and debug containers: what a pod runs that could reach the sidecar. */
function everyContainer(pod: V1Pod): (V1Container | V1EphemeralContainer)[] {
  return [...podContainers(pod), ...(pod.spec?.ephemeralContainers ?? [])];
}

function findSidecarVolumeConflict(pod: V1Pod): string | undefined {
  const spec = pod.spec;
  for (const container of everyContainer(pod)) {
    const volume = sidecarVolumeUsed(container);
    if (volume !== undefined) {
      return `container "${container.name}" mounts volume "${volume}", a volume of the Veil sidecar that only the sidecar may mount`;
    }
  }
  const volume = (spec?.volumes ?? []).find((v) => reservedVolumeNames.has(v.name));
  return volume === undefined ? undefined : `volume name "${volume.name}" is reserved for the Veil sidecar`;
}

// The sidecar's volumes are directories of the node (under the kubelet's pod
// folders): whatever reaches the node's files can edit unshipped records and
// take the stream's signing key.
function findHostPathVolume(spec: V1PodSpec | undefined): string | undefined {
  const volume = (spec?.volumes ?? []).find((v) => v.hostPath !== undefined);
  return volume === undefined
    ? undefined
    : `volume "${volume.name}" is a hostPath volume: pods Veil injects cannot mount the node's directories, where the sidecar's unshipped records and signing key live`;
}

/**
 * Why a container's security settings let it reach into the node, and so into the
 * sidecar's volumes there, or into the sidecar's processes; undefined when they
 * stay within Pod Security "baseline".
 */
export function nodeReachOf(container: NodeUser): string | undefined {
  const context = container.securityContext;
  if (context?.privileged === true) {
    return "is privileged: it would reach the node's devices and files, the sidecar's unshipped records and signing key among them";
  }
  const beyond = (context?.capabilities?.add ?? []).filter(
    (c) => !allowedCapabilities.has(capabilityName(c)),
  );
  if (beyond.length > 0) {
    const mesh = beyond.some((c) => capabilityName(c) === 'NET_ADMIN')
      ? " (a service mesh's init container adds NET_ADMIN to redirect the pod's traffic, as it could redirect the proxy's port to the model's: run the mesh in its CNI mode)"
      : '';
    return `adds capabilities beyond Pod Security baseline (${beyond.join(', ')}): they reach past the container, into the node or around the proxy${mesh}`;
  }
  if (context?.procMount === 'Unmasked') {
    return "asks for an unmasked /proc (procMount Unmasked): it would see the node's kernel settings the runtime hides";
  }
  return undefined;
}

/** The runtime takes SYS_ADMIN, sys_admin and CAP_SYS_ADMIN alike. */
function capabilityName(capability: string): string {
  return capability.toUpperCase().replace(/^CAP_/, '');
}

// The sidecar finds the controller and S3 by name: a pod that picks the name
// servers, the search list or a host alias for those names picks where the
// sidecar sends its records, and takes its policies from.
function findNameResolutionConflict(
  spec: V1PodSpec | undefined,
  settings: InjectionSettings,
): string | undefined {
  if (spec?.dnsPolicy === 'None') {
    return "dnsPolicy None cannot be used on pods Veil injects: the pod would choose the name servers the sidecar finds the controller and S3 by; use the cluster's DNS";
  }
  if ((spec?.dnsConfig?.nameservers ?? []).length > 0) {
    return 'dnsConfig.nameservers cannot be set on pods Veil injects: the pod would choose the name servers the sidecar finds the controller and S3 by (dnsConfig.options are allowed)';
  }
  if ((spec?.dnsConfig?.searches ?? []).length > 0) {
    return "dnsConfig.searches cannot be set on pods Veil injects: the pod would choose what the sidecar's names resolve to (dnsConfig.options are allowed)";
  }
  return findGuardedAlias(spec?.hostAliases ?? [], settings);
}

function findGuardedAlias(aliases: V1HostAlias[], settings: InjectionSettings): string | undefined {
  const guarded = guardedHosts(settings);
  for (const alias of aliases) {
    for (const hostname of alias.hostnames ?? []) {
      const host = guarded.find((g) => aliasCovers(hostname, g));
      if (host !== undefined) {
        return `hostAliases names "${hostname}", which would redirect the Veil sidecar's connections to ${host}: pods Veil injects cannot alias the hosts the sidecar ships records to or takes policies from`;
      }
    }
  }
  return undefined;
}

/**
 * The hosts the sidecar connects to by name. With S3 on AWS, or credentials from
 * the AWS SDK's default chain (which may call AWS STS), that is any AWS host.
 */
function guardedHosts(settings: InjectionSettings): string[] {
  const urls = [settings.controllerUrl, settings.approvalsUrl, settings.s3?.endpoint];
  const hosts = urls.filter((u) => u !== undefined).map((u) => new URL(u).hostname);
  const s3 = settings.s3;
  if (s3 !== undefined && (s3.endpoint === undefined || s3.credentialsSecret === undefined)) {
    hosts.push('amazonaws.com');
  }
  return hosts;
}

/**
 * Whether an alias would answer for the host: the host itself, a name below it
 * (a virtual-hosted bucket), or the host with a search domain appended.
 */
function aliasCovers(hostname: string, host: string): boolean {
  const name = hostname.toLowerCase().replace(/\.$/, '');
  return name === host || name.endsWith(`.${host}`) || name.startsWith(`${host}.`);
}

/** The termination grace, in seconds, an injected pod must give: its sidecar's close grace and some headroom. */
export function terminationGraceNeeded(settings: InjectionSettings): number {
  const close = settings.tuning.auditCloseGraceSeconds ?? DEFAULT_AUDIT_CLOSE_GRACE_SECONDS;
  return Math.ceil(close + closeHeadroomSeconds);
}

/**
 * Where pods that leave their termination grace unset are all refused, which
 * the operator should hear of at start rather than from each refusal.
 */
export function unsetGraceRefused(settings: InjectionSettings): string | undefined {
  const needed = terminationGraceNeeded(settings);
  if (needed <= defaultTerminationGraceSeconds) return undefined;
  return `tuning.auditCloseGraceSeconds needs a termination grace of ${needed} s: opted-in pods that leave terminationGracePeriodSeconds unset (${defaultTerminationGraceSeconds} s) are refused until they set it`;
}

// Deleting a pod gives it its termination grace: the sidecar needs its close
// grace of it to ship the spool, an emptyDir that goes with the pod.
function findShortTerminationGrace(
  spec: V1PodSpec | undefined,
  settings: InjectionSettings,
): string | undefined {
  const close = settings.tuning.auditCloseGraceSeconds ?? DEFAULT_AUDIT_CLOSE_GRACE_SECONDS;
  const needed = terminationGraceNeeded(settings);
  const given = spec?.terminationGracePeriodSeconds;
  if ((given ?? defaultTerminationGraceSeconds) >= needed) return undefined;
  const what =
    given === undefined
      ? `leaves terminationGracePeriodSeconds unset (${defaultTerminationGraceSeconds} s)`
      : `sets terminationGracePeriodSeconds to ${given}`;
  return `the pod ${what}, below the ${needed} s the Veil sidecar needs on shutdown to ship its unshipped records and close its stream (the injector's tuning.auditCloseGraceSeconds, ${close} s, plus ${closeHeadroomSeconds}): set terminationGracePeriodSeconds to ${needed} or more`;
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
  if (spec?.hostIPC === true) {
    return "pods in the node's IPC namespace (hostIPC) cannot be injected: Pod Security baseline forbids it as a way into the node's processes";
  }
  if (spec?.shareProcessNamespace === true) {
    return "pods that share a process namespace (shareProcessNamespace) cannot be injected: the other containers could read the sidecar's environment and files, its S3 credentials and keys";
  }
  return undefined;
}
