// Pod in, pod out: decides whether a pod gets the Veil sidecar and returns the pod
// with it. Pure and synchronous; whatever needs the cluster is looked up by the
// caller and passed in.
import { isDeepStrictEqual } from 'node:util';
import type { V1Container, V1Pod, V1Probe } from '@kubernetes/client-node';
import {
  type PodOptions,
  podContainers,
  podLabels,
  readInjectAnnotation,
  readPodOptions,
  veilAnnotations,
  veilLabels,
} from './annotations.ts';
import { findConflict, findPortNameClash } from './conflicts.ts';
import { memoryBytes } from './quantity.ts';
import type { InjectionSettings } from './settings.ts';
import { sidecarContainer, sidecarNames, sidecarVolumeNames, sidecarVolumes } from './sidecar.ts';
import type { InjectionStatus } from './status.ts';
import { type ControllerTrust, trustAnnotationKeys, trustAnnotations } from './trust.ts';
import { findUpstream, type Upstream } from './upstream.ts';

export type InjectionInput = {
  pod: V1Pod;
  /** The namespace of the admission request: a pod's own metadata may omit it. */
  namespace: string;
  /** Whether the namespace carries `veil.dev/injection: enabled`. */
  namespaceOptIn: boolean;
  settings: InjectionSettings;
  /** The EmbeddingPolicy the pod names, written into it; undefined when it does not exist (yet). */
  bootstrapPolicy: object | undefined;
  /** What the sidecar is to trust the controller by, from the injector's own key and CA. */
  trust: ControllerTrust;
};

export type InjectionResult =
  | { outcome: 'injected'; pod: V1Pod; warnings: string[] }
  | { outcome: 'unchanged'; pod: V1Pod; reason: string }
  | { outcome: 'denied'; message: string };

type Gate = { kind: 'inject' } | { kind: 'unchanged'; reason: string } | { kind: 'denied'; message: string };

const defaultContainerAnnotation = 'kubectl.kubernetes.io/default-container';

export function inject(input: InjectionInput): InjectionResult {
  const { pod, settings } = input;
  const gate = injectionGate(pod, input.namespace, input.namespaceOptIn, settings);
  if (gate.kind === 'unchanged') return { outcome: 'unchanged', pod, reason: gate.reason };
  if (gate.kind === 'denied') return { outcome: 'denied', message: gate.message };

  // The webhook never sees its own output (it is not reinvoked, and it guards
  // rather than injects on UPDATE), so a pod that arrives looking injected was
  // written by its author: a copy of an injected pod, perhaps with another
  // bootstrap policy or sidecar environment. Veil's parts are rebuilt, never trusted.
  const base = isInjected(pod) ? withoutVeil(pod) : pod;
  const options = readPodOptions(base);
  if (!options.ok) return { outcome: 'denied', message: options.message };
  const shortfall = findMemoryShortfall(options.value, settings);
  if (shortfall !== undefined) return { outcome: 'denied', message: shortfall };
  const conflict = findConflict(base, settings);
  if (conflict !== undefined) return { outcome: 'denied', message: conflict };
  const upstream = findUpstream(base, options.value.upstreamPort);
  if (!upstream.ok) return { outcome: 'denied', message: upstream.message };
  const clash = findPortNameClash(base, upstream.value);
  if (clash !== undefined) return { outcome: 'denied', message: clash };

  const plan: Plan = {
    settings,
    options: options.value,
    upstream: upstream.value,
    native: settings.nativeSidecars,
    namespace: input.namespace,
    bootstrapPolicy: input.bootstrapPolicy,
    trust: input.trust,
  };
  const injected = withSidecar(base, plan);
  if (isDeepStrictEqual(injected, pod)) return { outcome: 'unchanged', pod, reason: 'already injected' };
  return { outcome: 'injected', pod: injected, warnings: warningsFor(base, plan) };
}

/**
 * A pod's own memory for its sidecar must be above the request bodies the
 * settings let the sidecar hold (the settings' own limit is checked at start):
 * bodies held up to it would get the sidecar OOM-killed rather than answered 503.
 */
function findMemoryShortfall(options: PodOptions, settings: InjectionSettings): string | undefined {
  const memory = options.sidecarMemory;
  const { bodyMemoryBytes } = settings.tuning;
  if (memory === undefined || bodyMemoryBytes === undefined || bodyMemoryBytes < memoryBytes(memory)) {
    return undefined;
  }
  return `${veilAnnotations.sidecarMemory}: ${memory} must be above the sidecar's body memory (${bodyMemoryBytes} bytes, the injector's tuning.bodyMemoryBytes): bodies held up to it would get the sidecar OOM-killed`;
}

export function isExcludedNamespace(namespace: string, settings: InjectionSettings): boolean {
  return excludedNamespaces(settings).includes(namespace);
}

/** The namespaces never injected: a pod there labelled injected was labelled by hand. */
export function excludedNamespaces(settings: InjectionSettings): string[] {
  return ['kube-system', settings.injectorNamespace, ...settings.excludedNamespaces];
}

/** Whether `inject` would go on to inject: lets a caller skip its lookups for every other pod. */
export function injectionWanted(
  pod: V1Pod,
  namespace: string,
  namespaceOptIn: boolean,
  settings: InjectionSettings,
): boolean {
  return injectionGate(pod, namespace, namespaceOptIn, settings).kind === 'inject';
}

function injectionGate(
  pod: V1Pod,
  namespace: string,
  namespaceOptIn: boolean,
  settings: InjectionSettings,
): Gate {
  if (isExcludedNamespace(namespace, settings)) {
    return { kind: 'unchanged', reason: `namespace ${namespace} is never injected` };
  }
  const choice = readInjectAnnotation(pod);
  if (!choice.ok) return { kind: 'denied', message: choice.message };
  const optedIn = choice.value ?? namespaceOptIn;
  const forged = findForgedLabel(pod, optedIn, settings);
  if (forged !== undefined) return { kind: 'denied', message: forged };
  if (choice.value === false) return { kind: 'unchanged', reason: `opted out by ${veilAnnotations.inject}` };
  return optedIn ? { kind: 'inject' } : { kind: 'unchanged', reason: 'not opted in' };
}

// The label alone proves nothing: anyone creating a pod can set it to dodge the
// sidecar, and the controller takes every labelled pod for an injected one. So a
// labelled pod must carry a Veil sidecar and be one Veil injects, opted in or not.
function findForgedLabel(pod: V1Pod, optedIn: boolean, settings: InjectionSettings): string | undefined {
  if (!isInjected(pod)) return undefined;
  if (!hasVeilSidecar(pod, settings)) {
    return `the pod is labelled ${veilLabels.injected}=true but has no Veil sidecar; remove the label and let the webhook inject it`;
  }
  return optedIn
    ? undefined
    : `the pod is labelled ${veilLabels.injected}=true but is not opted in to injection; remove the label, or opt the pod in`;
}

function isInjected(pod: V1Pod): boolean {
  return podLabels(pod)[veilLabels.injected] === 'true';
}

/**
 * An injected pod as it was before injection: the sidecar, its volumes, Veil's
 * label and annotations go, and the model's port gets back the name the proxy
 * took over (the sidecar's proxy port carries it), so `inject` builds it afresh.
 */
function withoutVeil(original: V1Pod): V1Pod {
  const pod = JSON.parse(JSON.stringify(original)) as V1Pod;
  const spec = pod.spec ?? { containers: [] };
  const isSidecar = (c: V1Container) => c.name === sidecarNames.container;
  const sidecar = podContainers(pod).find(isSidecar);
  const takenOver = sidecar?.ports?.[0]?.name;
  spec.containers = spec.containers.filter((c) => !isSidecar(c));
  const initContainers = withoutItems(spec.initContainers, isSidecar);
  if (initContainers === undefined) delete spec.initContainers;
  else spec.initContainers = initContainers;
  const volumes = withoutItems(spec.volumes, (v) => veilVolumeNames.has(v.name));
  if (volumes === undefined) delete spec.volumes;
  else spec.volumes = volumes;
  if (takenOver !== undefined && takenOver !== sidecarNames.proxyPort) {
    for (const container of spec.containers) giveBackPortName(container, takenOver);
  }
  const metadata = pod.metadata ?? {};
  if (metadata.labels !== undefined) delete metadata.labels[veilLabels.injected];
  if (metadata.annotations !== undefined) {
    delete metadata.annotations[veilAnnotations.status];
    delete metadata.annotations[veilAnnotations.bootstrapPolicy];
    for (const key of trustAnnotationKeys) delete metadata.annotations[key];
  }
  return pod;
}

const veilVolumeNames: ReadonlySet<string> = new Set(Object.values(sidecarVolumeNames));

/**
 * The list without Veil's items; undefined when only Veil's items made it. A list
 * the pod's author left empty stays, as injection would keep it: dropping it would
 * make a second pass differ from the first.
 */
function withoutItems<T>(list: T[] | undefined, isVeil: (item: T) => boolean): T[] | undefined {
  const kept = list?.filter((item) => !isVeil(item));
  return kept?.length === 0 && list?.length !== 0 ? undefined : kept;
}

function giveBackPortName(container: V1Container, name: string): void {
  const port = container.ports?.find((p) => p.name === sidecarNames.upstreamPort);
  if (port === undefined) return;
  port.name = name;
  for (const probe of [container.startupProbe, container.readinessProbe, container.livenessProbe]) {
    renamePort(probe, sidecarNames.upstreamPort, name);
  }
  renamePort(container.lifecycle?.postStart, sidecarNames.upstreamPort, name);
  renamePort(container.lifecycle?.preStop, sidecarNames.upstreamPort, name);
}

function hasVeilSidecar(pod: V1Pod, settings: InjectionSettings): boolean {
  const repository = imageRepository(settings.sidecarImage);
  const candidates = [
    ...(pod.spec?.initContainers ?? []).filter((c) => c.restartPolicy === 'Always'),
    ...(pod.spec?.containers ?? []),
  ];
  // Any tag of the sidecar's repository counts, so pods injected by an earlier
  // release are still recognised after an upgrade.
  return candidates.some(
    (c) =>
      c.name === sidecarNames.container && c.image !== undefined && imageRepository(c.image) === repository,
  );
}

function imageRepository(image: string): string {
  const withoutDigest = image.split('@')[0] ?? image;
  const tagColon = withoutDigest.lastIndexOf(':');
  return tagColon > withoutDigest.lastIndexOf('/') ? withoutDigest.slice(0, tagColon) : withoutDigest;
}

type Plan = {
  settings: InjectionSettings;
  options: PodOptions;
  upstream: Upstream;
  native: boolean;
  namespace: string;
  bootstrapPolicy: object | undefined;
  trust: ControllerTrust;
};

function withSidecar(original: V1Pod, plan: Plan): V1Pod {
  // The pod came from JSON: a JSON round trip copies it faster than structuredClone.
  const pod = JSON.parse(JSON.stringify(original)) as V1Pod;
  const spec = pod.spec ?? { containers: [] };
  pod.spec = spec;
  const firstContainer = spec.containers[0]?.name;
  const model = spec.containers[plan.upstream.containerIndex];
  if (model !== undefined && plan.upstream.name !== undefined) {
    takeOverPortName(model, plan.upstream.portIndex, plan.upstream.name);
  }
  const sidecar = sidecarContainer(plan);
  if (plan.native) spec.initContainers = [sidecar, ...(spec.initContainers ?? [])];
  else spec.containers = [sidecar, ...spec.containers];
  const volumes = sidecarVolumes(plan.settings);
  spec.volumes = [...(spec.volumes ?? []), ...volumes];

  const metadata = pod.metadata ?? {};
  pod.metadata = metadata;
  metadata.labels = { ...metadata.labels, [veilLabels.injected]: 'true' };
  const annotations: Record<string, string> = { ...metadata.annotations };
  // Whatever the pod author put under Veil's own keys is replaced: the sidecar trusts
  // the bootstrap policy and the controller's key and CA it is given.
  delete annotations[veilAnnotations.bootstrapPolicy];
  for (const key of trustAnnotationKeys) delete annotations[key];
  if (plan.bootstrapPolicy !== undefined) {
    annotations[veilAnnotations.bootstrapPolicy] = JSON.stringify(plan.bootstrapPolicy);
  }
  Object.assign(annotations, trustAnnotations(plan.trust));
  if (!plan.native && firstContainer !== undefined && annotations[defaultContainerAnnotation] === undefined) {
    // The sidecar now comes first; keep `kubectl logs` and `exec` on the pod's own container.
    annotations[defaultContainerAnnotation] = firstContainer;
  }
  annotations[veilAnnotations.status] = JSON.stringify(
    statusFor(
      plan,
      volumes.map((v) => v.name),
    ),
  );
  metadata.annotations = annotations;
  return pod;
}

/**
 * Moves the port's name to the proxy and gives the model's port a name of its own.
 * The model's probes and lifecycle hooks may address the port by its old name, which
 * only resolves within the model's container: they follow the rename.
 */
function takeOverPortName(model: V1Container, portIndex: number, name: string): void {
  const port = model.ports?.[portIndex];
  if (port === undefined) return;
  port.name = sidecarNames.upstreamPort;
  for (const probe of [model.startupProbe, model.readinessProbe, model.livenessProbe])
    renamePort(probe, name, sidecarNames.upstreamPort);
  renamePort(model.lifecycle?.postStart, name, sidecarNames.upstreamPort);
  renamePort(model.lifecycle?.preStop, name, sidecarNames.upstreamPort);
}

function renamePort(
  handler: Pick<V1Probe, 'httpGet' | 'tcpSocket'> | undefined,
  from: string,
  to: string,
): void {
  if (handler?.httpGet?.port === from) handler.httpGet.port = to;
  if (handler?.tcpSocket?.port === from) handler.tcpSocket.port = to;
}

function statusFor(plan: Plan, volumes: string[]): InjectionStatus {
  const { settings, upstream } = plan;
  return {
    version: settings.sidecarVersion,
    image: settings.sidecarImage,
    mode: plan.native ? 'native-sidecar' : 'container',
    initContainers: plan.native ? [sidecarNames.container] : [],
    containers: plan.native ? [] : [sidecarNames.container],
    volumes,
    policy: plan.options.policy,
    api: plan.options.api,
    upstream: { container: upstream.container, port: upstream.port, name: upstream.name ?? null },
    portTakeover:
      upstream.name === undefined
        ? null
        : { name: upstream.name, renamedTo: sidecarNames.upstreamPort, proxyPort: settings.proxyPort },
    bootstrapPolicy: plan.bootstrapPolicy !== undefined,
  };
}

// Kept short: kubectl prints warnings whole, and the API server may truncate long ones.
function warningsFor(pod: V1Pod, plan: Plan): string[] {
  const { upstream, settings } = plan;
  const warnings: string[] = [];
  if (upstream.name === undefined) {
    warnings.push(
      `${veilAnnotations.upstreamPort}: port ${upstream.port} of "${upstream.container}" is unnamed; Services must target the proxy port ${settings.proxyPort}`,
    );
  }
  const restartPolicy = pod.spec?.restartPolicy ?? 'Always';
  if (!plan.native && restartPolicy !== 'Always') {
    warnings.push(
      `native sidecars are off: with restartPolicy ${restartPolicy} the pod does not complete while the sidecar runs`,
    );
  }
  const guarded = settings.networkPolicyNamespaces;
  if (guarded !== undefined && !guarded.includes(plan.namespace)) {
    warnings.push(
      `namespace ${plan.namespace} has no Veil NetworkPolicy (the chart's workloadNamespaces): other pods can reach the model's port around the proxy`,
    );
  }
  if (plan.bootstrapPolicy === undefined) {
    warnings.push(
      `EmbeddingPolicy ${plan.namespace}/${plan.options.policy} not found: the sidecar answers 503 until it exists`,
    );
  }
  return warnings;
}
