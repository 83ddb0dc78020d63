// The pod annotations and labels of the Kubernetes contract, and how the webhook reads
// them. Every value is validated here so that a denial names the annotation at fault.
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { z } from 'zod';
import { dnsLabel, portName, portNumber } from './names.ts';
import { cpuQuantity, memoryQuantity } from './quantity.ts';

export const veilAnnotations = {
  inject: 'veil.dev/inject',
  policy: 'veil.dev/policy',
  upstreamPort: 'veil.dev/upstream-port',
  api: 'veil.dev/api',
  sidecarCpu: 'veil.dev/sidecar-cpu',
  sidecarMemory: 'veil.dev/sidecar-memory',
  status: 'veil.dev/status',
  bootstrapPolicy: 'veil.dev/bootstrap-policy',
  /** The controller's public JWK, which the sidecar verifies pushes with (webhook/trust.ts). */
  controllerKey: 'veil.dev/controller-key',
  /** The CA bundle the sidecar verifies the controller's serving certificate by. */
  controllerCa: 'veil.dev/controller-ca',
} as const;

export const veilLabels = {
  injected: 'veil.dev/injected',
  namespaceInjection: 'veil.dev/injection',
} as const;

export const embeddingApis = ['openai', 'tei', 'ollama', 'cohere', 'auto'] as const;
export type EmbeddingApi = (typeof embeddingApis)[number];

export type Checked<T> = { ok: true; value: T } | { ok: false; message: string };

const upstreamPortRef = z.union([z.string().regex(/^\d+$/).transform(Number).pipe(portNumber), portName], {
  error: 'must be a container port number or port name',
});

const podAnnotationsSchema = z.object({
  [veilAnnotations.policy]: dnsLabel.default('default'),
  [veilAnnotations.upstreamPort]: upstreamPortRef.optional(),
  [veilAnnotations.api]: z
    .enum(embeddingApis, { error: `must be one of ${embeddingApis.join(', ')}` })
    .default('auto'),
  [veilAnnotations.sidecarCpu]: cpuQuantity.optional(),
  [veilAnnotations.sidecarMemory]: memoryQuantity.optional(),
});

export type PodOptions = {
  policy: string;
  /** A port number or name; undefined means the pod's first declared port. */
  upstreamPort: number | string | undefined;
  api: EmbeddingApi;
  /** Overrides the sidecar's CPU request, and its CPU limit when the settings set one. */
  sidecarCpu: string | undefined;
  /** Overrides the sidecar's memory request and limit alike, so the pod gets exactly that. */
  sidecarMemory: string | undefined;
};

export function podAnnotations(pod: V1Pod): Record<string, string> {
  return pod.metadata?.annotations ?? {};
}

export function podLabels(pod: V1Pod): Record<string, string> {
  return pod.metadata?.labels ?? {};
}

/** Every container of the pod, init containers (where a native sidecar runs) first. */
export function podContainers(pod: V1Pod): V1Container[] {
  return [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])];
}

/** `veil.dev/inject`: true opts in, false opts out, absent defers to the namespace. */
export function readInjectAnnotation(pod: V1Pod): Checked<boolean | undefined> {
  const value = podAnnotations(pod)[veilAnnotations.inject];
  if (value === undefined) return { ok: true, value: undefined };
  if (value === 'true' || value === 'false') return { ok: true, value: value === 'true' };
  return {
    ok: false,
    message: `${veilAnnotations.inject}: must be "true" or "false" (got ${quoted(value)})`,
  };
}

export function readPodOptions(pod: V1Pod): Checked<PodOptions> {
  const annotations = podAnnotations(pod);
  const parsed = podAnnotationsSchema.safeParse(annotations);
  if (!parsed.success) {
    const message = parsed.error.issues
      .map((issue) => {
        const key = String(issue.path[0]);
        return `${key}: ${issue.message} (got ${quoted(annotations[key])})`;
      })
      .join('; ');
    return { ok: false, message };
  }
  const a = parsed.data;
  return {
    ok: true,
    value: {
      policy: a[veilAnnotations.policy],
      upstreamPort: a[veilAnnotations.upstreamPort],
      api: a[veilAnnotations.api],
      sidecarCpu: a[veilAnnotations.sidecarCpu],
      sidecarMemory: a[veilAnnotations.sidecarMemory],
    },
  };
}

// Annotation values are the pod author's own text, so echoing them is safe; capping
// the length keeps a pasted blob out of the API server's event stream.
function quoted(value: string | undefined): string {
  if (value === undefined) return 'nothing';
  return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
}
