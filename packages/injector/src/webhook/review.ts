// AdmissionReview v1 for pods: the request and response shapes, and the decision for
// one review. CREATE injects; UPDATE, of the pod or its status, guards Veil's marks;
// exec, attach, debug containers and bindings are kept away from the sidecar and
// the marks; anything else passes.
import type { V1Pod } from '@kubernetes/client-node';
import { z } from 'zod';
import { vetBinding, vetConnect, vetEphemeralContainers } from './access.ts';
import { readInjectAnnotation, readPodOptions, veilAnnotations, veilLabels } from './annotations.ts';
import { inject, injectionWanted, isExcludedNamespace } from './inject.ts';
import { encodePatch, podPatch } from './patch.ts';
import type { InjectionSettings } from './settings.ts';
import { vetPodUpdate } from './tamper.ts';
import type { ControllerTrust } from './trust.ts';

const admissionApiVersion = 'admission.k8s.io/v1';

export const admissionRequestSchema = z.looseObject({
  uid: z.string().min(1),
  kind: z.object({ group: z.string(), version: z.string(), kind: z.string() }),
  resource: z.object({ group: z.string(), version: z.string(), resource: z.string() }),
  subResource: z.string().optional(),
  name: z.string().optional(),
  namespace: z.string().optional(),
  operation: z.enum(['CREATE', 'UPDATE', 'DELETE', 'CONNECT']),
  userInfo: z.looseObject({ username: z.string().optional(), groups: z.array(z.string()).optional() }),
  object: z.unknown().optional(),
  oldObject: z.unknown().optional(),
  dryRun: z.boolean().optional(),
});

export const admissionReviewRequestSchema = z.object({
  apiVersion: z.literal(admissionApiVersion),
  kind: z.literal('AdmissionReview'),
  request: admissionRequestSchema,
});

export const admissionResponseSchema = z.object({
  uid: z.string(),
  allowed: z.boolean(),
  status: z.object({ code: z.number().int(), message: z.string() }).optional(),
  patch: z.base64().optional(),
  patchType: z.literal('JSONPatch').optional(),
  warnings: z.array(z.string()).optional(),
});

export const admissionReviewResponseSchema = z.object({
  apiVersion: z.literal(admissionApiVersion),
  kind: z.literal('AdmissionReview'),
  response: admissionResponseSchema,
});

export type AdmissionRequest = z.infer<typeof admissionRequestSchema>;
export type AdmissionReviewRequest = z.infer<typeof admissionReviewRequestSchema>;
export type AdmissionResponse = z.infer<typeof admissionResponseSchema>;
export type AdmissionReviewResponse = z.infer<typeof admissionReviewResponseSchema>;

/** Only what the webhook relies on; the pod itself is passed on untouched. */
const podObjectSchema = z.looseObject({
  metadata: z
    .looseObject({
      labels: z.record(z.string(), z.string()).optional(),
      annotations: z.record(z.string(), z.string()).optional(),
    })
    .optional(),
  spec: z.looseObject({ containers: z.array(z.looseObject({ name: z.string() })).min(1) }),
});

/** PodExecOptions and PodAttachOptions alike: only the container is read. */
const connectOptionsSchema = z.looseObject({ container: z.string().optional() });

const bindingSchema = z.looseObject({
  metadata: z
    .looseObject({
      labels: z.record(z.string(), z.string()).optional(),
      annotations: z.record(z.string(), z.string()).optional(),
    })
    .optional(),
});

/** Whose containers a CONNECT may reach: the options name a container, not a pod. */
const connectSubResources: ReadonlySet<string> = new Set(['exec', 'attach']);

export type ReviewDependencies = {
  settings: InjectionSettings;
  /** The labels of a namespace; the review carries none. */
  namespaceLabels: (namespace: string) => Promise<Record<string, string>>;
  /** The EmbeddingPolicy `name` in `namespace`, or undefined when there is none. */
  bootstrapPolicy: (namespace: string, name: string) => Promise<object | undefined>;
  /** The namespaces the controller watches; empty or absent: every namespace. */
  watchedNamespaces?: readonly string[];
  /**
   * The pod `name` in `namespace` as the API server holds it, for reviews that
   * carry no pod (exec, attach, bindings); absent, those reviews are refused.
   */
  readPod?: (namespace: string, name: string) => Promise<V1Pod>;
  /** The controller's key and CA bundle as the injector holds them now, written into each pod. */
  controllerTrust: () => ControllerTrust;
  /** The injector's own usernames: the only ones that may change those annotations on a pod. */
  trustWriters: readonly string[];
};

export type ReviewResult = {
  review: AdmissionReviewResponse;
  /** For the log: what happened to the pod, and why. */
  outcome: 'injected' | 'unchanged' | 'denied' | 'ignored';
  detail: string;
};

export async function reviewPodAdmission(
  review: AdmissionReviewRequest,
  deps: ReviewDependencies,
): Promise<ReviewResult> {
  const request = review.request;
  if (request.operation === 'CONNECT' && connectSubResources.has(request.subResource ?? '')) {
    return admitConnect(request, deps);
  }
  // Served at pods/binding and at the older bindings resource alike.
  if (request.kind.kind === 'Binding' && request.operation === 'CREATE') return admitBinding(request, deps);
  if (request.kind.kind !== 'Pod') return allow(request.uid, 'ignored', `not a pod: ${request.kind.kind}`);
  // A status update stores the labels and annotations it carries, so it could
  // strip or rewrite Veil's marks: it is vetted as any update is.
  if (request.subResource === 'status' && request.operation === 'UPDATE') return admitUpdate(request, deps);
  if (request.subResource === 'ephemeralcontainers' && request.operation === 'UPDATE') {
    return admitEphemeralContainers(request);
  }
  if (request.subResource !== undefined) return allow(request.uid, 'ignored', `pods/${request.subResource}`);
  if (request.operation === 'CREATE') return admitCreate(request, deps);
  if (request.operation === 'UPDATE') return admitUpdate(request, deps);
  return allow(request.uid, 'ignored', request.operation);
}

async function admitCreate(request: AdmissionRequest, deps: ReviewDependencies): Promise<ReviewResult> {
  const pod = asPod(request.object);
  if (pod === undefined) return deny(request.uid, 400, 'the review carries no valid pod');
  const namespace = request.namespace ?? pod.metadata?.namespace;
  if (namespace === undefined) return deny(request.uid, 400, 'the review names no namespace');

  let namespaceOptIn: boolean;
  let bootstrapPolicy: object | undefined;
  try {
    namespaceOptIn = await lookUpNamespaceOptIn(pod, namespace, deps);
    const wanted = injectionWanted(pod, namespace, namespaceOptIn, deps.settings);
    // The controller serves, pushes and patches only the pods where it watches:
    // injected elsewhere, the sidecar would keep its bootstrap policy for good.
    if (wanted && !isWatched(namespace, deps)) {
      return deny(
        request.uid,
        403,
        `namespace ${namespace} is not among the namespaces the Veil controller watches (controller.watchNamespaces in the chart, VEIL_WATCH_NAMESPACES in the injector): the controller would never push the pod's policy, revoke it or give the sidecar a rotated key; add the namespace there, or set ${veilAnnotations.inject}: "false"`,
      );
    }
    bootstrapPolicy = wanted ? await lookUpBootstrapPolicy(pod, namespace, deps) : undefined;
  } catch (error) {
    // Fail closed: a pod that may need auditing is never admitted on a guess.
    return deny(
      request.uid,
      500,
      `the Veil injector could not read namespace ${namespace} or its EmbeddingPolicy: ${messageOf(error)}`,
    );
  }

  const result = inject({
    pod,
    namespace,
    namespaceOptIn,
    settings: deps.settings,
    bootstrapPolicy,
    trust: deps.controllerTrust(),
  });
  if (result.outcome === 'denied') return deny(request.uid, 400, result.message);
  if (result.outcome === 'unchanged') return allow(request.uid, 'unchanged', result.reason);
  const patch = encodePatch(podPatch(pod, result.pod));
  const response: AdmissionResponse = {
    uid: request.uid,
    allowed: true,
    ...(patch === undefined ? {} : { patch, patchType: 'JSONPatch' as const }),
    ...(result.warnings.length === 0 ? {} : { warnings: result.warnings }),
  };
  return { review: wrap(response), outcome: 'injected', detail: result.warnings.join('; ') };
}

function admitUpdate(request: AdmissionRequest, deps: ReviewDependencies): ReviewResult {
  const pod = asPod(request.object);
  const oldPod = asPod(request.oldObject);
  if (pod === undefined || oldPod === undefined)
    return deny(request.uid, 400, 'the review carries no valid pod');
  const refusal = vetPodUpdate(oldPod, pod, {
    username: request.userInfo.username,
    trustWriters: deps.trustWriters,
  });
  return refusal === undefined ? allow(request.uid, 'unchanged', 'update') : deny(request.uid, 403, refusal);
}

async function admitConnect(request: AdmissionRequest, deps: ReviewDependencies): Promise<ReviewResult> {
  const options = connectOptionsSchema.safeParse(request.object);
  if (!options.success)
    return deny(request.uid, 400, `the review carries no valid pods/${request.subResource}`);
  const pod = await lookUpPod(request, deps);
  if (!pod.ok) return pod.result;
  const refusal = vetConnect(pod.value, request.subResource ?? '', options.data.container);
  return refusal === undefined
    ? allow(request.uid, 'unchanged', `pods/${request.subResource}`)
    : deny(request.uid, 403, refusal);
}

function admitEphemeralContainers(request: AdmissionRequest): ReviewResult {
  const pod = asPod(request.object);
  const oldPod = asPod(request.oldObject);
  if (pod === undefined || oldPod === undefined)
    return deny(request.uid, 400, 'the review carries no valid pod');
  const refusal = vetEphemeralContainers(oldPod, pod);
  return refusal === undefined
    ? allow(request.uid, 'unchanged', 'pods/ephemeralcontainers')
    : deny(request.uid, 403, refusal);
}

async function admitBinding(request: AdmissionRequest, deps: ReviewDependencies): Promise<ReviewResult> {
  const binding = bindingSchema.safeParse(request.object);
  if (!binding.success) return deny(request.uid, 400, 'the review carries no valid binding');
  const pod = await lookUpPod(request, deps);
  if (!pod.ok) return pod.result;
  const refusal = vetBinding(pod.value, binding.data.metadata ?? {});
  return refusal === undefined ? allow(request.uid, 'unchanged', 'binding') : deny(request.uid, 403, refusal);
}

// Fail closed: a request the sidecar's safety depends on is never let through
// on a pod the webhook could not see.
async function lookUpPod(
  request: AdmissionRequest,
  deps: ReviewDependencies,
): Promise<{ ok: true; value: V1Pod } | { ok: false; result: ReviewResult }> {
  const { namespace, name } = request;
  if (namespace === undefined || name === undefined) {
    return { ok: false, result: deny(request.uid, 400, 'the review names no pod') };
  }
  if (deps.readPod === undefined) {
    return {
      ok: false,
      result: deny(request.uid, 500, `the Veil injector cannot read pod ${namespace}/${name}`),
    };
  }
  try {
    return { ok: true, value: await deps.readPod(namespace, name) };
  } catch (error) {
    return {
      ok: false,
      result: deny(
        request.uid,
        500,
        `the Veil injector could not read pod ${namespace}/${name}: ${messageOf(error)}`,
      ),
    };
  }
}

// The namespace is asked only when the pod does not decide for itself, so pods that
// do not involve Veil never wait on, or fail with, a lookup.
async function lookUpNamespaceOptIn(
  pod: V1Pod,
  namespace: string,
  deps: ReviewDependencies,
): Promise<boolean> {
  if (isExcludedNamespace(namespace, deps.settings)) return false;
  const choice = readInjectAnnotation(pod);
  if (!choice.ok || choice.value !== undefined) return false;
  const labels = await deps.namespaceLabels(namespace);
  return labels[veilLabels.namespaceInjection] === 'enabled';
}

function isWatched(namespace: string, deps: ReviewDependencies): boolean {
  const watched = deps.watchedNamespaces ?? [];
  return watched.length === 0 || watched.includes(namespace);
}

/** The policy a pod to inject names, as the controller last validated it. */
async function lookUpBootstrapPolicy(
  pod: V1Pod,
  namespace: string,
  deps: ReviewDependencies,
): Promise<object | undefined> {
  const options = readPodOptions(pod);
  return options.ok ? deps.bootstrapPolicy(namespace, options.value.policy) : undefined;
}

function asPod(object: unknown): V1Pod | undefined {
  // Validated for the fields the webhook reads, then used as sent: the patch must be
  // computed against the very object the API server holds.
  return podObjectSchema.safeParse(object).success ? (object as V1Pod) : undefined;
}

function allow(uid: string, outcome: ReviewResult['outcome'], detail: string): ReviewResult {
  return { review: wrap({ uid, allowed: true }), outcome, detail };
}

function deny(uid: string, code: number, message: string): ReviewResult {
  return {
    review: wrap({ uid, allowed: false, status: { code, message } }),
    outcome: 'denied',
    detail: message,
  };
}

function wrap(response: AdmissionResponse): AdmissionReviewResponse {
  return { apiVersion: admissionApiVersion, kind: 'AdmissionReview', response };
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
