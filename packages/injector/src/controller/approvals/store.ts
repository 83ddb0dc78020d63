// EmbeddingApprovals as the API server stores them: read, status patches
// conditional on the version read, creation with a first status, deletion
// unless changed, and the count of a requester's pending ones. Kubernetes I/O
// only; what to write, and when, is for its callers.
import { createHash, randomBytes } from 'node:crypto';
import { type CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import {
  type ApprovalSpec,
  type ApprovalStatus,
  approvalSpecSchema,
  approvalStatusSchema,
  countsAsPending,
  GROUP,
  VERSION,
} from '@veil/core';
import type { Log } from '../log.ts';

const plural = 'embeddingapprovals';
const requesterLabelName = 'veil.dev/requester';

export type Stored = {
  metadata: {
    name: string;
    namespace: string;
    creationTimestamp?: string | Date;
    resourceVersion?: string;
  };
  spec: ApprovalSpec;
  status: ApprovalStatus;
};

export type Requester = Pick<ApprovalSpec['requester'], 'issuer' | 'subject'>;

export type ApprovalStoreOptions = {
  api: CustomObjectsApi;
  now: () => Date;
  log: Log;
};

export class ApprovalStore {
  readonly #options: ApprovalStoreOptions;

  constructor(options: ApprovalStoreOptions) {
    this.#options = options;
  }

  async read(namespace: string, name: string): Promise<Stored | undefined> {
    try {
      return toStored(
        await this.#options.api.getNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace,
          plural,
          name,
        }),
      );
    } catch (error) {
      if ((error as { code?: number }).code === 404) return undefined;
      throw error;
    }
  }

  async patchStatus(stored: Stored, patch: unknown[]): Promise<Stored> {
    const { namespace, name, resourceVersion } = stored.metadata;
    return toStored(
      await this.#options.api.patchNamespacedCustomObjectStatus(
        {
          group: GROUP,
          version: VERSION,
          namespace,
          plural,
          name,
          body: [{ op: 'test', path: '/metadata/resourceVersion', value: resourceVersion }, ...patch],
        },
        setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
      ),
    );
  }

  /** Creates the approval and its first status; one whose status cannot be written is deleted. */
  async create(namespace: string, spec: ApprovalSpec): Promise<Stored> {
    const { api, log } = this.#options;
    const name = `ea-${randomBytes(6).toString('hex')}`;
    const object = await api.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace,
      plural,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'EmbeddingApproval',
        metadata: {
          name,
          namespace,
          labels: {
            'veil.dev/policy': spec.policy,
            'veil.dev/rule': spec.rule,
            [requesterLabelName]: requesterLabel(spec.requester),
          },
        },
        spec,
      },
    });
    try {
      return await this.patchStatus(toStored(object), [
        { op: 'add', path: '/status', value: { phase: 'Pending', decisions: [] } },
      ]);
    } catch (error) {
      // The sidecar is told to retry and opens another; failing this, the sweep expires it.
      await api
        .deleteNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural, name })
        .catch((deleteError) =>
          log.warn('approval without status not deleted', {
            namespace,
            name,
            error: (deleteError as Error).message,
          }),
        );
      throw error;
    }
  }

  /** Deletes the approval unless it changed since it was read; false when it changed or is gone. */
  async deleteIfUnchanged(stored: Stored): Promise<boolean> {
    const { namespace, name, resourceVersion } = stored.metadata;
    try {
      await this.#options.api.deleteNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace,
        plural,
        name,
        body: { preconditions: { resourceVersion } },
      });
      return true;
    } catch (error) {
      // Another replica's sweep deleted it, or it changed: the next sweep looks again.
      const code = (error as { code?: number }).code;
      if (code === 404 || code === 409) return false;
      throw error;
    }
  }

  /** The requester's approvals in the namespace still open to a decision. */
  async pendingOf(namespace: string, requester: Requester): Promise<number> {
    const list = (await this.#options.api.listNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace,
      plural,
      labelSelector: `${requesterLabelName}=${requesterLabel(requester)}`,
    })) as { items?: unknown[] };
    // The label alone could be any requester's that hashes alike.
    return (list.items ?? []).filter((item) => {
      const stored = readStored(item);
      return stored !== undefined && countsAsPending(stored, requester, this.#options.now());
    }).length;
  }

  /** Every valid approval in every namespace. */
  async list(): Promise<Stored[]> {
    const list = (await this.#options.api.listCustomObjectForAllNamespaces({
      group: GROUP,
      version: VERSION,
      resourcePlural: plural,
    })) as {
      items?: unknown[];
    };
    return (list.items ?? []).flatMap((item) => readStored(item) ?? []);
  }
}

/** A label value (hex, within the 63 characters allowed); a collision only lists more, never counts more. */
function requesterLabel(requester: Requester): string {
  return createHash('sha256')
    .update(JSON.stringify([requester.issuer, requester.subject]))
    .digest('hex')
    .slice(0, 40);
}

/**
 * A listed approval as stored; undefined for one that is not valid (never made
 * by this controller). A spec field a newer controller added is dropped.
 */
export function readStored(item: unknown): Stored | undefined {
  try {
    return toStored(item);
  } catch {
    return undefined;
  }
}

/**
 * Strictly, unlike the CLI: a spec field this controller does not know may be
 * a condition of the approval's use it cannot check, so such an approval is
 * refused, never used as if the field were not there.
 */
function toStored(object: unknown): Stored {
  const o = object as { metadata: Stored['metadata']; spec: unknown; status?: unknown };
  return {
    metadata: o.metadata,
    spec: approvalSpecSchema.parse(o.spec),
    status: approvalStatusSchema.parse(o.status ?? {}),
  };
}
