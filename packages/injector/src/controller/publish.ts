// Publishes a copy of the controller's public JWK as a ConfigMap (default
// `veil-controller-key`, key `jwk.json`) in every namespace with policies or
// injected pods, with `ca.crt`, the CA bundle of the controller's serving
// certificate, beside it: published once the controller knows one, republished
// when it changes, and left as it is while the controller does not know it (yet).
// Sidecars injected now do not trust it, as a namespace's editors can write it:
// they read their pod's trust annotations (controller/trust.ts). The copy is for
// pods injected by earlier releases, which mount it until they are restarted.
import type { CoreV1Api, V1ConfigMap } from '@kubernetes/client-node';
import type { JWK } from 'jose';
import type { CaBundleSource } from '../certs/cabundle.ts';
import { controllerCaKey as caBundleKey } from '../webhook/settings.ts';
import type { Log } from './log.ts';
import { statusCode } from './statuswriter.ts';

export type KeyPublisherOptions = {
  api: CoreV1Api;
  publicJwk: JWK;
  /** The ConfigMap's name and data key, as the injection settings' `controllerKey` says. */
  name: string;
  key: string;
  /** The controller's serving CA bundle, published under `ca.crt`; absent: never published. */
  caBundle?: Pick<CaBundleSource, 'current'>;
  log: Log;
};

export const managedByLabel = { 'app.kubernetes.io/managed-by': 'veil-controller' } as const;

export class KeyPublisher {
  readonly #options: KeyPublisherOptions;
  readonly #data: string;
  /** Namespace: the content published there (see #content). */
  readonly #published = new Map<string, string>();
  readonly #inFlight = new Map<string, { content: string; work: Promise<void> }>();
  #active = false;

  constructor(options: KeyPublisherOptions) {
    this.#options = options;
    this.#data = `${JSON.stringify(options.publicJwk, null, 2)}\n`;
  }

  activate(namespaces: Iterable<string>): void {
    this.#active = true;
    for (const namespace of namespaces) this.ensure(namespace);
  }

  /**
   * ensure() for every namespace, asking the API server whatever this replica
   * published last: a ConfigMap deleted or edited by hand comes back.
   */
  recheck(namespaces: Iterable<string>): void {
    if (!this.#active) return;
    for (const namespace of namespaces) {
      this.#published.delete(namespace);
      void this.ensure(namespace);
    }
  }

  deactivate(): void {
    this.#active = false;
    // The next leader term checks again: the ConfigMap may have been edited meanwhile.
    this.#published.clear();
  }

  /**
   * Makes sure `namespace` has the ConfigMap with this key and the current CA bundle;
   * resolves when it does (or gave up).
   */
  ensure(namespace: string): Promise<void> {
    if (!this.#active) return Promise.resolve();
    const bundle = this.#options.caBundle?.current();
    const content = this.#content(bundle);
    if (this.#published.get(namespace) === content) return Promise.resolve();
    const pending = this.#inFlight.get(namespace);
    if (pending) {
      // Under way with an older bundle: once it settles, once more with this one.
      return pending.content === content ? pending.work : pending.work.then(() => this.ensure(namespace));
    }
    const work = this.#publish(namespace, bundle, content).finally(() => this.#inFlight.delete(namespace));
    this.#inFlight.set(namespace, { content, work });
    return work;
  }

  /** What a namespace holds once published: the key, and the bundle as far as known. */
  #content(bundle: string | undefined): string {
    return bundle === undefined ? this.#data : `${this.#data}\0${bundle}`;
  }

  async #publish(namespace: string, bundle: string | undefined, content: string): Promise<void> {
    const { api, name, key, log } = this.#options;
    const wanted = (existing: Record<string, string> | undefined): Record<string, string> => {
      const data: Record<string, string> = { [key]: this.#data };
      // Unknown (yet): whatever bundle is there stays, rather than leave the pods without one.
      const ca = bundle ?? existing?.[caBundleKey];
      if (ca !== undefined && key !== caBundleKey) data[caBundleKey] = ca;
      return data;
    };
    const body: V1ConfigMap = {
      metadata: { name, namespace, labels: { ...managedByLabel } },
      data: wanted(undefined),
    };
    try {
      let written = true;
      try {
        await api.createNamespacedConfigMap({ namespace, body });
      } catch (error) {
        if (statusCode(error) !== 409) throw error;
        const existing = await api.readNamespacedConfigMap({ name, namespace });
        const data = wanted(existing.data);
        written = !sameData(existing.data, data);
        if (written) {
          // resourceVersion makes this conditional: a concurrent edit fails it, and the next try fixes it.
          await api.replaceNamespacedConfigMap({
            name,
            namespace,
            body: {
              ...body,
              metadata: { ...body.metadata, resourceVersion: existing.metadata?.resourceVersion },
              data,
            },
          });
        }
      }
      this.#published.set(namespace, content);
      // Only a write is news: the periodic recheck finds most namespaces as they were.
      if (written) {
        log.info('controller key published', {
          namespace,
          configMap: name,
          caBundle: bundle !== undefined,
        });
      }
    } catch (error) {
      // Left unmarked: the next pod or policy event in the namespace, or the next recheck, tries again.
      log.warn('controller key not published', {
        namespace,
        configMap: name,
        code: statusCode(error),
        error: (error as Error).message,
      });
    }
  }
}

function sameData(a: Record<string, string> | undefined, b: Record<string, string>): boolean {
  const keys = Object.keys(a ?? {});
  return keys.length === Object.keys(b).length && keys.every((k) => a?.[k] === b[k]);
}
