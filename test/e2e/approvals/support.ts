// What the approval e2e tests share: the stamping webhook served in-process and
// registered with the real API server, approvers' RBAC, EmbeddingApprovals
// created the way the controller creates them, the controller's approvals API,
// and the pod-bound token a sidecar presents to it.
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AdmissionregistrationV1Api,
  AuthenticationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  RbacAuthorizationV1Api,
  setHeaderOptions,
  type V1Pod,
} from '@kubernetes/client-node';
import { type ApprovalSpec, GROUP, type PolicySpec, type PolicySpecInput, VERSION } from '@veil/core';
import { generateControllerJwk, silentLog, startWebhookServer, type WebhookServer } from '@veil/injector';
import {
  type ApprovalsApi,
  type ApprovalsApiOptions,
  startApprovalsApi,
} from '../../../packages/injector/src/controller/approvals.ts';
import { tokenReviewAuthenticator } from '../../../packages/injector/src/controller/pull.ts';
import {
  type SidecarFixture,
  startSidecarFixture,
  testPolicy,
} from '../../../packages/sidecar/test/fixtures/sidecar.ts';
import { type ControlPlane, startControlPlane, type User } from '../../harness/index.ts';
import { freshNamespace, installCrds, podToken } from '../kube/support/cluster.ts';

export const controllerUsername = 'admin';

/** The webhook server with approval stamping, the controller being the admin user here. */
export async function startApprovalWebhook(cp: ControlPlane): Promise<WebhookServer> {
  const cert = await cp.issueServingCert(`approvals-${randomBytes(3).toString('hex')}`);
  const { d: _private, ...publicJwk } = await generateControllerJwk();
  return startWebhookServer({
    settings: {
      sidecarImage: 'registry.example.com/veil/veil-sidecar:0.1.0',
      sidecarVersion: '0.1.0',
      injectorNamespace: 'veil-system',
      controllerUrl: 'https://veil-injector.veil-system.svc:8444',
      cluster: 'e2e',
    },
    tls: { certFile: cert.cert, keyFile: cert.key },
    host: '127.0.0.1',
    port: 0,
    namespaceLabels: async () => ({}),
    bootstrapPolicy: async () => undefined,
    controllerTrust: () => ({ publicJwk, caBundle: undefined }),
    trustWriters: [controllerUsername],
    approvals: { controllerUsernames: [controllerUsername] },
  });
}

/** The approvals webhook as the chart would register it: url clientConfig, the cluster CA. */
export async function registerApprovalWebhook(cp: ControlPlane, url: string): Promise<string> {
  const name = `veil-approvals-${randomBytes(3).toString('hex')}`;
  await cp
    .kubeConfig()
    .makeApiClient(AdmissionregistrationV1Api)
    .createMutatingWebhookConfiguration({
      body: {
        metadata: { name },
        webhooks: [
          {
            name: 'approvals.veil.dev',
            admissionReviewVersions: ['v1'],
            sideEffects: 'None',
            failurePolicy: 'Fail',
            reinvocationPolicy: 'IfNeeded',
            clientConfig: {
              url: `${url}/mutate-approvals`,
              caBundle: (await readFile(cp.caCert)).toString('base64'),
            },
            rules: [
              {
                apiGroups: [GROUP],
                apiVersions: [VERSION],
                operations: ['UPDATE'],
                resources: ['embeddingapprovals', 'embeddingapprovals/status'],
              },
            ],
          },
        ],
      },
    });
  return name;
}

export async function deleteApprovalWebhook(cp: ControlPlane, name: string): Promise<void> {
  await cp
    .kubeConfig()
    .makeApiClient(AdmissionregistrationV1Api)
    .deleteMutatingWebhookConfiguration({ name });
}

/**
 * Read and decide rights for every group used here, requesters and outsiders too:
 * RBAC lets them try, so the webhook is what refuses them.
 */
export async function grantApprovalAccess(cp: ControlPlane, groups: string[]): Promise<void> {
  const rbac = cp.kubeConfig().makeApiClient(RbacAuthorizationV1Api);
  const name = `veil-approvals-${randomBytes(3).toString('hex')}`;
  await rbac.createClusterRole({
    body: {
      metadata: { name },
      rules: [
        {
          apiGroups: [GROUP],
          resources: ['embeddingapprovals'],
          verbs: ['get', 'list', 'watch', 'update', 'patch'],
        },
        { apiGroups: [GROUP], resources: ['embeddingapprovals/status'], verbs: ['get', 'update', 'patch'] },
      ],
    },
  });
  await rbac.createClusterRoleBinding({
    body: {
      metadata: { name },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name },
      subjects: groups.map((group) => ({
        apiGroup: 'rbac.authorization.k8s.io',
        kind: 'Group',
        name: group,
      })),
    },
  });
}

export function approvalSpec(overrides: Partial<ApprovalSpec> = {}): ApprovalSpec {
  return {
    requester: { issuer: 'https://idp.example.com', subject: 'alice', groups: ['ml'] },
    policy: 'default',
    rule: 'bulk',
    pod: { namespace: 'ml', name: 'embed-0' },
    request: {
      api: 'openai',
      model: 'text-embedding-3-small',
      inputCount: 500,
      bytes: 12_000,
      digest: `sha256:${randomBytes(32).toString('hex')}`,
      summary: '500 inputs; first: "customer <EMAIL> asked about …"',
    },
    approvers: { groups: ['approvers'], count: 1 },
    expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
    singleUse: true,
    ...overrides,
  };
}

/** Creates the object and its first status, as the controller does (status is ignored on create). */
export async function createApproval(
  cp: ControlPlane,
  namespace: string,
  spec: ApprovalSpec,
): Promise<string> {
  const name = await createApprovalWithoutStatus(cp, namespace, spec);
  await cp
    .kubeConfig()
    .makeApiClient(CustomObjectsApi)
    .patchNamespacedCustomObjectStatus(
      {
        group: GROUP,
        version: VERSION,
        namespace,
        plural: 'embeddingapprovals',
        name,
        body: { status: { phase: 'Pending', decisions: [] } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  return name;
}

/** The object alone, as the controller leaves it when writing its first status fails. */
export async function createApprovalWithoutStatus(
  cp: ControlPlane,
  namespace: string,
  spec: ApprovalSpec,
): Promise<string> {
  const name = `req-${randomBytes(4).toString('hex')}`;
  await cp
    .kubeConfig()
    .makeApiClient(CustomObjectsApi)
    .createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace,
      plural: 'embeddingapprovals',
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'EmbeddingApproval',
        metadata: { name, namespace },
        spec,
      },
    });
  return name;
}

/**
 * Makes every status write to the approvals of `namespace` fail, as when a
 * webhook or the API server errs: a webhook there that nothing answers, with
 * failurePolicy Fail. Returns once it is in force, with what lifts it again
 * (and returns once writes pass).
 */
export async function failApprovalWrites(cp: ControlPlane, namespace: string): Promise<() => Promise<void>> {
  const probe = await createApproval(cp, namespace, approvalSpec());
  const admission = cp.kubeConfig().makeApiClient(AdmissionregistrationV1Api);
  const name = `veil-approvals-down-${randomBytes(3).toString('hex')}`;
  await admission.createMutatingWebhookConfiguration({
    body: {
      metadata: { name },
      webhooks: [
        {
          name: 'down.approvals.veil.dev',
          admissionReviewVersions: ['v1'],
          sideEffects: 'None',
          failurePolicy: 'Fail',
          timeoutSeconds: 1,
          namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': namespace } },
          clientConfig: {
            url: 'https://127.0.0.1:1/down',
            caBundle: (await readFile(cp.caCert)).toString('base64'),
          },
          rules: [
            {
              apiGroups: [GROUP],
              apiVersions: [VERSION],
              operations: ['UPDATE'],
              resources: ['embeddingapprovals/status'],
            },
          ],
        },
      ],
    },
  });
  const probeWrite = async (): Promise<boolean> => {
    try {
      await patchStatusAs(cp, cp.kubeconfig, namespace, probe, [
        { op: 'add', path: '/status/message', value: randomBytes(4).toString('hex') },
      ]);
      return true;
    } catch (error) {
      if (/failed calling webhook/.test(String((error as { body?: unknown }).body ?? error))) return false;
      throw error;
    }
  };
  await until(async () => !(await probeWrite()), 'status writes to fail');
  return async () => {
    await admission.deleteMutatingWebhookConfiguration({ name });
    await until(probeWrite, 'status writes to pass again');
  };
}

async function until(condition: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = performance.now() + 30_000;
  while (!(await condition())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A raw JSON Patch of the status as one user: what a hand-made kubectl call would send. */
export async function patchStatusAs(
  cp: ControlPlane,
  kubeconfig: string,
  namespace: string,
  name: string,
  patch: unknown[],
): Promise<unknown> {
  return cp
    .kubeConfig(kubeconfig)
    .makeApiClient(CustomObjectsApi)
    .patchNamespacedCustomObjectStatus(
      { group: GROUP, version: VERSION, namespace, plural: 'embeddingapprovals', name, body: patch },
      setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
    );
}

/**
 * The API server picks up a new webhook configuration asynchronously: waits until
 * a decision by the admin (in no approver group) is refused by the webhook rather
 * than by schema validation.
 */
export async function waitForApprovalWebhook(cp: ControlPlane, namespace: string): Promise<void> {
  const name = await createApproval(cp, namespace, approvalSpec());
  const deadline = performance.now() + 30_000;
  let last = '';
  while (performance.now() < deadline) {
    try {
      await patchStatusAs(cp, cp.kubeconfig, namespace, name, [
        { op: 'add', path: '/status/decisions/-', value: { decision: 'approve', reason: 'probe' } },
      ]);
      last = 'accepted';
    } catch (error) {
      last = String((error as { body?: unknown }).body ?? error);
      if (/not an approver/.test(last)) return;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`the approvals webhook is not in force (last: ${last})`);
}

/**
 * The controller's approvals API on loopback with a serving certificate from the
 * cluster's CA, callers known through TokenReview; the sweep runs only when a
 * test asks for it (`sweepNow`).
 */
export async function startTestApprovalsApi(
  cp: ControlPlane,
  certName: string,
  options: Pick<
    ApprovalsApiOptions,
    'policy' | 'policiesInSync' | 'now' | 'notify' | 'keepForMs' | 'maxLongPollsPerPod'
  >,
): Promise<ApprovalsApi> {
  const cert = await cp.issueServingCert(certName);
  return startApprovalsApi({
    kubeConfig: cp.kubeConfig(),
    tls: { certFile: cert.cert, keyFile: cert.key },
    host: '127.0.0.1',
    port: 0,
    authenticate: tokenReviewAuthenticator(cp.kubeConfig().makeApiClient(AuthenticationV1Api)),
    log: silentLog,
    expiryIntervalMs: 3_600_000,
    ...options,
  });
}

/**
 * A pod of `namespace` with its service account, as stored: an injected one
 * unless `injected` is false. No injection webhook runs in these tests, so the
 * pod carries the label the webhook would have set.
 */
export async function testPod(cp: ControlPlane, namespace: string, injected = true): Promise<V1Pod> {
  const core = cp.kubeConfig().makeApiClient(CoreV1Api);
  await core
    .createNamespacedServiceAccount({ namespace, body: { metadata: { name: 'model' } } })
    .catch((error: { code?: number }) => {
      if (error.code !== 409) throw error;
    });
  return core.createNamespacedPod({
    namespace,
    body: {
      metadata: {
        name: `embed-${randomBytes(3).toString('hex')}`,
        labels: injected ? { 'veil.dev/injected': 'true' } : {},
      },
      spec: {
        serviceAccountName: 'model',
        containers: [{ name: 'model', image: 'example.invalid/model:1' }],
      },
    },
  });
}

/** The token a sidecar holds for the controller: that of a new injected pod in `namespace`. */
export async function sidecarToken(cp: ControlPlane, namespace: string): Promise<string> {
  return podToken(cp, await testPod(cp, namespace));
}

/** A sidecar that holds requests at a real approvals API, with all that stands behind it. */
export interface HeldSidecarWorld {
  readonly cp: ControlPlane;
  /** An approver (group `approvers`). */
  readonly bob: User;
  /** Where the sidecar's pod, and so its approvals, live. */
  readonly namespace: string;
  readonly approvals: ApprovalsApi;
  readonly fixture: SidecarFixture;
  close(): Promise<void>;
}

/**
 * A control plane with the CRDs, the stamping webhook in force and an approver;
 * the controller's approvals API serving policy `test` (the sidecar's policy
 * with `approvalsPolicy`'s rules, as the controller would hold it); and a
 * sidecar presenting an injected pod's bound token. `name` tells the parts of
 * one test file apart.
 */
export async function startHeldSidecar(
  name: string,
  approvalsPolicy: PolicySpecInput,
  options: Pick<ApprovalsApiOptions, 'now'> = {},
): Promise<HeldSidecarWorld> {
  const cp = await startControlPlane();
  const undo: (() => Promise<unknown>)[] = [() => cp.stop()];
  const close = async (): Promise<void> => {
    for (const step of undo.reverse()) await step().catch(() => undefined);
  };
  try {
    await installCrds(cp);
    const bob = await cp.addUser('bob', ['approvers']);
    await grantApprovalAccess(cp, ['approvers']);
    const webhook = await startApprovalWebhook(cp);
    undo.push(() => webhook.close());
    const webhookName = await registerApprovalWebhook(cp, webhook.url);
    undo.push(() => deleteApprovalWebhook(cp, webhookName));
    await waitForApprovalWebhook(cp, await freshNamespace(cp, 'probe'));
    let sidecarPolicy: PolicySpec | undefined;
    const approvals = await startTestApprovalsApi(cp, `approvals-${name}`, {
      policy: (_namespace, policy) =>
        policy === 'test' && sidecarPolicy ? { name: policy, hash: 'h', spec: sidecarPolicy } : undefined,
      notify: async () => undefined,
      ...options,
    });
    undo.push(() => approvals.close());
    const namespace = await freshNamespace(cp, name);
    const dir = await mkdtemp(join(tmpdir(), `veil-${name}-`));
    undo.push(() => rm(dir, { recursive: true, force: true }));
    await writeFile(join(dir, 'token'), await sidecarToken(cp, namespace));
    const fixture = await startSidecarFixture({
      policy: approvalsPolicy,
      config: {
        approvalsUrl: approvals.url,
        controllerTokenFile: join(dir, 'token'),
        controllerCaFile: cp.caCert,
      },
    });
    undo.push(() => fixture.close());
    sidecarPolicy = testPolicy([fixture.issuer], approvalsPolicy);
    return { cp, bob, namespace, approvals, fixture, close };
  } catch (error) {
    await close();
    throw error;
  }
}
