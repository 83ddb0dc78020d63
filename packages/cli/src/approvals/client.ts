// EmbeddingApprovals through the user's own kubeconfig: list, read, and decide.
// A decision is only `{decision, reason}` appended to status.decisions with a JSON
// Patch on the status subresource; the admission webhook stamps who and when from
// the API server's view of the caller, and recomputes the phase.
import { homedir } from 'node:os';
import { join } from 'node:path';
import {
  ApiException,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import {
  type ApprovalSpec,
  type ApprovalStatus,
  approvalStatusSchema,
  GROUP,
  openProblems,
  storedApprovalSpecSchema,
  VERSION,
} from '@veil/core';
import { z } from 'zod';
import { CliError } from '../command.ts';
import { networkCode } from '../network.ts';

export const approvalsPlural = 'embeddingapprovals';

/** The phase shown for a status this CLI cannot read: never taken for Pending. */
export const unreadablePhase = 'Unreadable';

/** A status as shown: as stored, or marked unreadable (no decisions, and a message saying why). */
export type ShownStatus = Omit<ApprovalStatus, 'phase'> & {
  phase: ApprovalStatus['phase'] | typeof unreadablePhase;
};

export type Approval = {
  namespace: string;
  name: string;
  createdAt: string | undefined;
  spec: ApprovalSpec;
  status: ShownStatus;
};

/** An object listed that this CLI cannot read, by name, with what in it is not readable. */
export type UnreadableApproval = { namespace: string; name: string; problem: string };

/** A listing: the approvals read, and any object that could not be, kept apart rather than failing the rest. */
export type ApprovalList = { approvals: Approval[]; unreadable: UnreadableApproval[] };

const storedSchema = z.looseObject({
  metadata: z.looseObject({
    name: z.string(),
    namespace: z.string(),
    creationTimestamp: z.union([z.string(), z.date()]).optional(),
    resourceVersion: z.string().optional(),
  }),
  spec: storedApprovalSpecSchema,
  status: z.unknown().optional(),
});

/** `--kubeconfig`, else KUBECONFIG, else ~/.kube/config (client-node's default chain). */
export function loadKubeConfig(path: string | undefined, env: NodeJS.ProcessEnv = process.env): KubeConfig {
  const kubeConfig = new KubeConfig();
  try {
    if (path !== undefined) kubeConfig.loadFromFile(path);
    else if (env.KUBECONFIG) kubeConfig.loadFromDefault();
    else kubeConfig.loadFromFile(join(homedir(), '.kube', 'config'));
  } catch (error) {
    throw new CliError(`cannot read the kubeconfig: ${(error as Error).message}`);
  }
  return kubeConfig;
}

/** The namespace of the current context, as kubectl uses it. */
export function contextNamespace(kubeConfig: KubeConfig): string {
  return kubeConfig.getContextObject(kubeConfig.getCurrentContext())?.namespace ?? 'default';
}

/**
 * `NAME` in the default namespace, or `NAMESPACE/NAME`. `explicit` is the
 * namespace the user named with -n, if any: an ID naming another one is refused,
 * not settled silently for either.
 */
export function parseApprovalRef(
  text: string,
  defaultNamespace: string,
  explicit?: string,
): { namespace: string; name: string } {
  const parts = text.split('/');
  if (parts.length === 1 && parts[0]) return { namespace: explicit ?? defaultNamespace, name: parts[0] };
  if (parts.length === 2 && parts[0] && parts[1]) {
    if (explicit !== undefined && explicit !== parts[0]) {
      throw new CliError(
        `"${text}" names namespace ${parts[0]} but -n names ${explicit}: give the namespace once`,
      );
    }
    return { namespace: parts[0], name: parts[1] };
  }
  throw new CliError(`"${text}" is not an approval ID: give NAME or NAMESPACE/NAME`);
}

/** The approval as stored, or what makes it unreadable here (a newer CRD, or a hand-made object). */
export function readApproval(object: unknown): Approval | UnreadableApproval {
  const parsed = storedSchema.safeParse(object);
  if (!parsed.success) return { ...objectName(object), problem: openProblems(parsed.error) };
  const status = approvalStatusSchema.safeParse(parsed.data.status ?? {});
  const created = parsed.data.metadata.creationTimestamp;
  return {
    namespace: parsed.data.metadata.namespace,
    name: parsed.data.metadata.name,
    createdAt: created instanceof Date ? created.toISOString() : created,
    spec: parsed.data.spec,
    status: status.success
      ? status.data
      : {
          phase: unreadablePhase,
          decisions: [],
          message: `this CLI cannot read the status (${openProblems(status.error)}); see it with kubectl`,
        },
  };
}

/** Its namespace and name, as far as it has them: what a problem with it is reported under. */
function objectName(object: unknown): { namespace: string; name: string } {
  const metadata = (object as { metadata?: { namespace?: unknown; name?: unknown } } | undefined)?.metadata;
  const text = (value: unknown) => (typeof value === 'string' && value !== '' ? value : '?');
  return { namespace: text(metadata?.namespace), name: text(metadata?.name) };
}

function isUnreadable(read: Approval | UnreadableApproval): read is UnreadableApproval {
  return 'problem' in read;
}

function toApproval(object: unknown): Approval {
  const read = readApproval(object);
  if (isUnreadable(read)) {
    throw new CliError(
      `EmbeddingApproval ${read.namespace}/${read.name} is not one this CLI can read (${read.problem})`,
      1,
    );
  }
  return read;
}

/** Where approvals are read and decided: the API server, or a running `veil dev`. */
export interface ApprovalsSource {
  /** In one namespace, or every namespace when `namespace` is undefined. */
  list(namespace: string | undefined): Promise<ApprovalList>;
  get(namespace: string, name: string): Promise<Approval>;
  /** Appends one decision; who decided is the authenticated caller, never the body. */
  decide(
    namespace: string,
    name: string,
    decision: { decision: 'approve' | 'deny'; reason: string },
  ): Promise<Approval>;
}

/** The API server gave no answer: nothing was refused, and nothing was decided. */
export class ApiUnreachableError extends CliError {}

export class ApprovalsClient implements ApprovalsSource {
  readonly #api: CustomObjectsApi;
  readonly #server: string;

  constructor(kubeConfig: KubeConfig) {
    this.#api = kubeConfig.makeApiClient(CustomObjectsApi);
    this.#server = kubeConfig.getCurrentCluster()?.server ?? 'the API server';
  }

  /** In one namespace, or every namespace when `namespace` is undefined. */
  async list(namespace: string | undefined): Promise<ApprovalList> {
    const list = (await explain(this.#server, () =>
      namespace === undefined
        ? this.#api.listCustomObjectForAllNamespaces({
            group: GROUP,
            version: VERSION,
            resourcePlural: approvalsPlural,
          })
        : this.#api.listNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            namespace,
            plural: approvalsPlural,
          }),
    )) as { items?: unknown[] };
    const listed: ApprovalList = { approvals: [], unreadable: [] };
    for (const item of list.items ?? []) {
      const read = readApproval(item);
      if (isUnreadable(read)) listed.unreadable.push(read);
      else listed.approvals.push(read);
    }
    return listed;
  }

  async get(namespace: string, name: string): Promise<Approval> {
    return toApproval(await this.#read(namespace, name));
  }

  /** The approval as the API server stores it. */
  #read(namespace: string, name: string): Promise<unknown> {
    return explain(this.#server, () =>
      this.#api.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace,
        plural: approvalsPlural,
        name,
      }),
    );
  }

  /**
   * Appends one decision. Only `decision` and `reason` are sent: the webhook writes
   * the approver, their groups and the time. Returns the stored approval.
   */
  async decide(
    namespace: string,
    name: string,
    decision: { decision: 'approve' | 'deny'; reason: string },
  ): Promise<Approval> {
    const current = (await this.#read(namespace, name)) as {
      metadata?: { resourceVersion?: string };
      status?: { decisions?: unknown[] };
    };
    // Appending with "-" is applied to the object as stored, so concurrent approvers
    // never overwrite each other; a missing status is created only if nothing changed.
    const patch = Array.isArray(current.status?.decisions)
      ? [{ op: 'add', path: '/status/decisions/-', value: decision }]
      : [
          { op: 'test', path: '/metadata/resourceVersion', value: current.metadata?.resourceVersion },
          { op: 'add', path: '/status', value: { phase: 'Pending', decisions: [decision] } },
        ];
    return toApproval(
      await explain(this.#server, () =>
        this.#api.patchNamespacedCustomObjectStatus(
          { group: GROUP, version: VERSION, namespace, plural: approvalsPlural, name, body: patch },
          setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
        ),
      ),
    );
  }
}

/**
 * Runs one API call, turning an API error into the API server's own message,
 * and any other failure, where no answer came, into `cannot reach <server>`.
 */
async function explain<T>(server: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (error instanceof ApiException) throw new CliError(apiMessage(error), 1);
    throw new ApiUnreachableError(`cannot reach ${server} (${networkCode(error) ?? rootMessage(error)})`, 1);
  }
}

/** The Status message the API server (or an admission webhook) answered with. */
export function apiMessage(error: ApiException<unknown>): string {
  const body: unknown = typeof error.body === 'string' ? safeJson(error.body) : error.body;
  const message = (body as { message?: unknown } | undefined)?.message;
  if (typeof message === 'string' && message !== '') return message;
  return `the API server answered ${error.code}`;
}

/** The innermost cause's message: fetch says only "fetch failed", its cause says why. */
function rootMessage(error: unknown): string {
  let current = error;
  for (let depth = 0; depth < 4 && current instanceof Error && current.cause !== undefined; depth++) {
    current = current.cause;
  }
  return current instanceof Error ? current.message : String(current);
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return { message: text };
  }
}
