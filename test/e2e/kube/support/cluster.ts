// What every Kubernetes e2e test here needs from the real API server: kubectl,
// the Veil CRDs, a fresh namespace per test, service-account tokens (pod-bound
// ones too), and polling without wall-clock assertions.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import {
  CoreV1Api,
  CustomObjectsApi,
  RbacAuthorizationV1Api,
  type V1Pod,
  type V1PolicyRule,
} from '@kubernetes/client-node';
import { GROUP, VERSION } from '@veil/core';
import { pullAudience } from '@veil/injector';
import { stringify } from 'yaml';
import { type ControlPlane, infraBinary } from '../../../harness/index.ts';

const run = promisify(execFile);

export const repoRoot = join(import.meta.dirname, '..', '..', '..', '..');

export async function kubectl(cp: ControlPlane, ...args: string[]): Promise<string> {
  const { stdout } = await run(infraBinary('kubectl'), ['--kubeconfig', cp.kubeconfig, ...args]);
  return stdout;
}

/** kubectl's own error text when it fails, for asserting on what a user would read. */
export async function kubectlFails(cp: ControlPlane, ...args: string[]): Promise<string> {
  try {
    await kubectl(cp, ...args);
  } catch (error) {
    return String((error as { stderr?: string }).stderr ?? error);
  }
  throw new Error(`kubectl ${args.join(' ')} succeeded`);
}

/** Applies crds/ and waits until the API server serves both kinds. */
export async function installCrds(cp: ControlPlane): Promise<void> {
  await kubectl(cp, 'apply', '-f', join(repoRoot, 'crds'));
  await kubectl(
    cp,
    'wait',
    '--for=condition=Established',
    '--timeout=60s',
    'crd/embeddingpolicies.veil.dev',
    'crd/embeddingapprovals.veil.dev',
  );
}

/** A namespace of its own per test: nothing deletes namespaces without a controller-manager. */
export async function freshNamespace(
  cp: ControlPlane,
  prefix: string,
  labels: Record<string, string> = {},
): Promise<string> {
  const name = `${prefix}-${randomBytes(3).toString('hex')}`;
  await cp
    .kubeConfig()
    .makeApiClient(CoreV1Api)
    .createNamespace({ body: { metadata: { name, labels } } });
  return name;
}

/**
 * Creates service account `name` in `namespace`; returns what mints its tokens
 * for an audience, as the kubelet projects them into a pod.
 */
export async function createServiceAccount(
  cp: ControlPlane,
  namespace: string,
  name: string,
): Promise<(audience: string) => Promise<string>> {
  const core = cp.kubeConfig().makeApiClient(CoreV1Api);
  await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name } } });
  return async (audience) => {
    const { status } = await core.createNamespacedServiceAccountToken({
      namespace,
      name,
      body: { spec: { audiences: [audience], expirationSeconds: 600 } },
    });
    return status?.token ?? '';
  };
}

/**
 * A new user holding a Role `name` of `rules` in `namespace` (and nothing else),
 * as a namespace's editors are given theirs; returns a core API client acting as them.
 */
export async function namespaceUser(
  cp: ControlPlane,
  namespace: string,
  name: string,
  rules: V1PolicyRule[],
): Promise<CoreV1Api> {
  const user = await cp.addUser(`${name}-${namespace}`);
  const rbac = cp.kubeConfig().makeApiClient(RbacAuthorizationV1Api);
  await rbac.createNamespacedRole({ namespace, body: { metadata: { name }, rules } });
  await rbac.createNamespacedRoleBinding({
    namespace,
    body: {
      metadata: { name },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name },
      subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: user.name }],
    },
  });
  return cp.kubeConfig(user.kubeconfig).makeApiClient(CoreV1Api);
}

/**
 * A token of the pod's service account for the controller, as the kubelet
 * projects it into the pod: bound to the pod unless `bound` is false.
 */
export async function podToken(cp: ControlPlane, pod: V1Pod, bound = true): Promise<string> {
  const { status } = await cp
    .kubeConfig()
    .makeApiClient(CoreV1Api)
    .createNamespacedServiceAccountToken({
      namespace: pod.metadata?.namespace ?? '',
      name: pod.spec?.serviceAccountName ?? 'default',
      body: {
        spec: {
          audiences: [pullAudience],
          expirationSeconds: 600,
          ...(bound && {
            boundObjectRef: {
              apiVersion: 'v1',
              kind: 'Pod',
              name: pod.metadata?.name,
              uid: pod.metadata?.uid,
            },
          }),
        },
      },
    });
  return status?.token ?? '';
}

/** `kubectl apply -f` of an EmbeddingPolicy, the way an ML team changes one. */
export async function applyPolicy(
  cp: ControlPlane,
  namespace: string,
  name: string,
  spec: unknown,
): Promise<void> {
  const file = join(cp.dir, `policy-${namespace}-${name}-${randomBytes(4).toString('hex')}.yaml`);
  await writeFile(
    file,
    stringify({
      apiVersion: `${GROUP}/${VERSION}`,
      kind: 'EmbeddingPolicy',
      metadata: { name, namespace },
      spec,
    }),
  );
  await kubectl(cp, 'apply', '-f', file);
}

export type StoredPolicy = {
  metadata: { generation: number; resourceVersion: string };
  status?: {
    observedGeneration?: number;
    contentHash?: string;
    podsInSync?: number;
    podsTotal?: number;
    sync?: string;
    conditions?: {
      type: string;
      status: string;
      reason: string;
      message: string;
      observedGeneration?: number;
    }[];
  };
};

export async function readPolicy(cp: ControlPlane, namespace: string, name: string): Promise<StoredPolicy> {
  return (await cp.kubeConfig().makeApiClient(CustomObjectsApi).getNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: 'embeddingpolicies',
    name,
  })) as StoredPolicy;
}

export function readyCondition(policy: StoredPolicy) {
  return policy.status?.conditions?.find((c) => c.type === 'Ready');
}

/** Polls until `probe` returns a value (not undefined), failing with what it last saw. */
export async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 30_000,
  intervalMs = 25,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let last: unknown;
  while (performance.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
      last = undefined;
    } catch (error) {
      last = error;
    }
    await sleep(intervalMs);
  }
  throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (last: ${String(last)})` : ''}`);
}
