// Publishes the controller's public JWK as a ConfigMap (default
// `veil-controller-key`, key `jwk.json`) in every namespace with policies or
// injected pods. Volumes cannot cross namespaces, and the injected sidecar
// mounts this one to verify pushes; the kubelet holds a pod until it exists.
import type { CoreV1Api, V1ConfigMap } from '@kubernetes/client-node';
import type { JWK } from 'jose';
import type { Log } from './log.ts';
import { statusCode } from './statuswriter.ts';

export type KeyPublisherOptions = {
  api: CoreV1Api;
  publicJwk: JWK;
  /** The ConfigMap's name and data key, as the injection settings' `controllerKey` says. */
  name: string;
  key: string;
  log: Log;
};

export const managedByLabel = { 'app.kubernetes.io/managed-by': 'veil-controller' } as const;

export class KeyPublisher {
  readonly #options: KeyPublisherOptions;
  readonly #data: string;
  readonly #published = new Set<string>();
  readonly #inFlight = new Map<string, Promise<void>>();
  #active = false;

  constructor(options: KeyPublisherOptions) {
    this.#options = options;
    this.#data = `${JSON.stringify(options.publicJwk, null, 2)}\n`;
  }

  activate(namespaces: Iterable<string>): void {
    this.#active = true;
    for (const namespace of namespaces) this.ensure(namespace);
  }

  deactivate(): void {
    this.#active = false;
    // The next leader term checks again: the ConfigMap may have been edited meanwhile.
    this.#published.clear();
  }

  /** Makes sure `namespace` has the ConfigMap with this key; resolves when it does (or gave up). */
  ensure(namespace: string): Promise<void> {
    if (!this.#active || this.#published.has(namespace)) return Promise.resolve();
    const pending = this.#inFlight.get(namespace);
    if (pending) return pending;
    const work = this.#publish(namespace).finally(() => this.#inFlight.delete(namespace));
    this.#inFlight.set(namespace, work);
    return work;
  }

  async #publish(namespace: string): Promise<void> {
    const { api, name, key, log } = this.#options;
    const body: V1ConfigMap = {
      metadata: { name, namespace, labels: { ...managedByLabel } },
      data: { [key]: this.#data },
    };
    try {
      try {
        await api.createNamespacedConfigMap({ namespace, body });
      } catch (error) {
        if (statusCode(error) !== 409) throw error;
        const existing = await api.readNamespacedConfigMap({ name, namespace });
        if (existing.data?.[key] !== this.#data) {
          await api.replaceNamespacedConfigMap({
            name,
            namespace,
            body: {
              ...body,
              metadata: { ...body.metadata, resourceVersion: existing.metadata?.resourceVersion },
            },
          });
        }
      }
      this.#published.add(namespace);
      log.info('controller key published', { namespace, configMap: name });
    } catch (error) {
      // Left unmarked: the next pod or policy event in the namespace tries again.
      log.warn('controller key not published', {
        namespace,
        configMap: name,
        code: statusCode(error),
        error: (error as Error).message,
      });
    }
  }
}
