// EmbeddingPolicy objects as the controller sees them: each one validated with
// the same zod schema the sidecar and `veil policy lint` use, so a policy the
// controller calls valid is one every sidecar will ACK.
import {
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { GROUP, policyHash, policySpecSchema, policyStatusSchema, VERSION } from '@veil/core';
import type { z } from 'zod';
import type { WatchedResource } from './informers.ts';

export const policyPlural = 'embeddingpolicies';

export type PolicyStatus = z.infer<typeof policyStatusSchema>;

export type PolicyVerdict =
  // The spec as written, not as parsed: a sidecar parses it with its own schema,
  // and what it hashes is what it ACKs.
  { valid: true; hash: string; spec: unknown } | { valid: false; problems: string[] };

export type PolicyView = {
  /** `<namespace>/<name>` */
  key: string;
  namespace: string;
  name: string;
  uid: string;
  generation: number;
  resourceVersion: string;
  verdict: PolicyVerdict;
  /** The status as stored, when it parses. */
  status: PolicyStatus | undefined;
};

export type EmbeddingPolicyObject = KubernetesObject & { spec?: unknown; status?: unknown };

export function policyKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

/** The parts of a `policyKey`: a namespace never holds a slash. */
export function policyKeyParts(key: string): { namespace: string; name: string } {
  const slash = key.indexOf('/');
  return { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}

/** The view of a stored object; undefined for one without the metadata every stored object has. */
export function policyView(object: EmbeddingPolicyObject): PolicyView | undefined {
  const { namespace, name, uid, resourceVersion, generation } = object.metadata ?? {};
  if (!namespace || !name || !uid || !resourceVersion) return undefined;
  const status = policyStatusSchema.safeParse(object.status);
  return {
    key: policyKey(namespace, name),
    namespace,
    name,
    uid,
    generation: generation ?? 0,
    resourceVersion,
    verdict: judge(object.spec),
    status: status.success ? status.data : undefined,
  };
}

export function judge(spec: unknown): PolicyVerdict {
  const parsed = policySpecSchema.safeParse(spec);
  if (parsed.success) return { valid: true, hash: policyHash(parsed.data), spec };
  return {
    valid: false,
    problems: parsed.error.issues.map((i) => `${fieldPath(['spec', ...i.path])}: ${i.message}`),
  };
}

/** `spec.masking.rules[0].patterns[1].regex`, the way kubectl names fields. */
export function fieldPath(path: readonly PropertyKey[]): string {
  return path
    .map((part, index) =>
      typeof part === 'number' ? `[${part}]` : `${index === 0 ? '' : '.'}${String(part)}`,
    )
    .join('');
}

/** Where informers list and watch EmbeddingPolicies. */
export function policyResource(kubeConfig: KubeConfig): WatchedResource<EmbeddingPolicyObject> {
  const api = kubeConfig.makeApiClient(CustomObjectsApi);
  const base = `/apis/${GROUP}/${VERSION}`;
  return {
    path: (namespace) =>
      namespace ? `${base}/namespaces/${namespace}/${policyPlural}` : `${base}/${policyPlural}`,
    list: async (namespace) =>
      (namespace
        ? await api.listNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            namespace,
            plural: policyPlural,
          })
        : await api.listCustomObjectForAllNamespaces({
            group: GROUP,
            version: VERSION,
            resourcePlural: policyPlural,
          })) as KubernetesListObject<EmbeddingPolicyObject>,
  };
}
