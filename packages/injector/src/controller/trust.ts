// Keeps the controller's key and CA bundle in the annotations of every injected
// pod, where its sidecar reads them (webhook/trust.ts): a key or CA rotation, a
// pod injected by a replica that still had the old key, or a bundle the webhook
// did not know yet, all reach running sidecars without a restart, as the kubelet
// rewrites the downwardAPI files. Only the leader patches, and only pods that differ.
import { type CoreV1Api, PatchStrategy, setHeaderOptions, type V1Pod } from '@kubernetes/client-node';
import { type ControllerTrust, trustAnnotations } from '../webhook/trust.ts';
import type { Log } from './log.ts';
import { podView } from './pods.ts';
import { statusCode } from './statuswriter.ts';

export type TrustPatcherOptions = {
  api: Pick<CoreV1Api, 'patchNamespacedPod'>;
  /** The key and CA bundle as this replica holds them now. */
  trust: () => ControllerTrust;
  log: Log;
};

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

export class TrustPatcher {
  readonly #options: TrustPatcherOptions;
  /** Pod UIDs with a patch under way: the pod's next event checks it again. */
  readonly #inFlight = new Set<string>();
  #active = false;

  constructor(options: TrustPatcherOptions) {
    this.#options = options;
  }

  activate(pods: Iterable<V1Pod>): void {
    this.#active = true;
    this.ensureAll(pods);
  }

  deactivate(): void {
    this.#active = false;
  }

  ensureAll(pods: Iterable<V1Pod>): void {
    for (const pod of pods) void this.ensure(pod);
  }

  /** Patches the pod's trust annotations when they differ from this replica's; resolves when done (or given up). */
  async ensure(pod: V1Pod): Promise<void> {
    const view = podView(pod);
    if (!this.#active || view === undefined || this.#inFlight.has(view.uid)) return;
    const current = pod.metadata?.annotations ?? {};
    const stale = Object.entries(trustAnnotations(this.#options.trust())).filter(
      ([key, value]) => current[key] !== value,
    );
    if (stale.length === 0) return;
    const { namespace, name, uid } = view;
    this.#inFlight.add(uid);
    try {
      // The UID makes it conditional: a pod re-created under the same name is not patched blind.
      await this.#options.api.patchNamespacedPod(
        { namespace, name, body: { metadata: { uid, annotations: Object.fromEntries(stale) } } },
        mergePatch,
      );
      this.#options.log.info('controller trust patched', {
        namespace,
        pod: name,
        annotations: stale.map(([key]) => key).join(', '),
      });
    } catch (error) {
      // Left as is: the pod's next event, or the next recheck, tries again.
      this.#options.log.warn('controller trust not patched', {
        namespace,
        pod: name,
        code: statusCode(error),
        error: (error as Error).message,
      });
    } finally {
      this.#inFlight.delete(uid);
    }
  }
}
