// List-and-watch caches over one resource, across all namespaces or a set of
// them. client-node's informer gives up on an error; a controller must not, so
// each one is restarted with a growing delay until it is stopped.
import {
  type Informer,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  type ListPromise,
  makeInformer,
  type ObjectCache,
} from '@kubernetes/client-node';
import { backoffDelay } from './backoff.ts';

export type WatchedResource<T extends KubernetesObject> = {
  /** The watch path for one namespace, or for all when namespace is undefined. */
  path(namespace: string | undefined): string;
  list(namespace: string | undefined): Promise<KubernetesListObject<T>>;
  labelSelector?: string;
};

export type InformerEvents<T> = {
  upsert(object: T): void;
  remove(object: T): void;
  /** A watch failed and is being restarted; the cache keeps what it had. */
  error?(error: unknown): void;
};

export type Watched<T> = {
  list(): T[];
  /** One object by name, from the cache's index: no copy of the whole cache. */
  get(namespace: string, name: string): T | undefined;
  /**
   * Every informer's last list succeeded and no watch has failed since: what the
   * cache lacks, the API server lacks too, as of the last event.
   */
  synced(): boolean;
  stop(): Promise<void>;
};

/**
 * Starts one informer per namespace (or one for all) and resolves once every
 * one has listed, so callers see a complete cache from the first read.
 */
export async function watchResource<T extends KubernetesObject>(
  kubeConfig: KubeConfig,
  resource: WatchedResource<T>,
  namespaces: readonly string[],
  events: InformerEvents<T>,
): Promise<Watched<T>> {
  const scopes = namespaces.length === 0 ? [undefined] : [...namespaces];
  const running = scopes.map((namespace) => restarting(kubeConfig, resource, namespace, events));
  try {
    await Promise.all(running.map((r) => r.started));
  } catch (error) {
    await Promise.all(running.map((r) => r.stop()));
    throw error;
  }
  return {
    list: () => running.flatMap((r) => [...r.cache.list()]),
    get: (namespace, name) => {
      for (const r of running) {
        const found = r.cache.get(name, namespace);
        if (found !== undefined) return found;
      }
      return undefined;
    },
    synced: () => running.every((r) => r.synced()),
    stop: async () => {
      await Promise.all(running.map((r) => r.stop()));
    },
  };
}

type Running<T> = {
  cache: ObjectCache<T>;
  started: Promise<void>;
  synced(): boolean;
  stop(): Promise<void>;
};

function restarting<T extends KubernetesObject>(
  kubeConfig: KubeConfig,
  resource: WatchedResource<T>,
  namespace: string | undefined,
  events: InformerEvents<T>,
): Running<T> {
  const listFn: ListPromise<T> = () => resource.list(namespace);
  const informer: Informer<T> & ObjectCache<T> = makeInformer(
    kubeConfig,
    resource.path(namespace),
    listFn,
    resource.labelSelector,
  );
  let stopped = false;
  let failures = 0;
  let failedNow = false;
  let listed = false;
  let retry: NodeJS.Timeout | undefined;
  let markSynced: () => void = () => undefined;
  const synced = new Promise<void>((resolve) => {
    markSynced = resolve;
  });
  // start() resolves after a failed list too; only a start without an error
  // means the cache holds the whole list.
  const attempt = async (): Promise<void> => {
    failedNow = false;
    await informer.start().catch(() => {
      failedNow = true;
    });
    if (!failedNow && !stopped) {
      listed = true;
      markSynced();
    }
  };
  informer.on('add', (object) => events.upsert(object));
  informer.on('update', (object) => events.upsert(object));
  informer.on('delete', (object) => events.remove(object));
  informer.on('error', (error) => {
    failedNow = true;
    // Until the relist, anything created or deleted meanwhile is missing from the cache.
    listed = false;
    if (stopped) return;
    events.error?.(error);
    clearTimeout(retry);
    retry = setTimeout(
      () => {
        retry = undefined;
        if (!stopped)
          void attempt().then(() => {
            if (!failedNow) failures = 0;
          });
      },
      backoffDelay(failures++, { initialMs: 500, maxMs: 30_000 }),
    );
  });
  void attempt();
  return {
    cache: informer,
    started: synced,
    synced: () => listed && !stopped,
    async stop() {
      stopped = true;
      markSynced();
      clearTimeout(retry);
      await informer.stop();
    },
  };
}
