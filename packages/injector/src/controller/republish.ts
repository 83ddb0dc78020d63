// Keeps the key's ConfigMaps and the pods' trust annotations current while this
// replica leads, between the events that publish and patch them.
import type { V1Pod } from '@kubernetes/client-node';
import type { CaBundleSource } from '../certs/cabundle.ts';
import type { KeyPublisher } from './publish.ts';
import type { TrustPatcher } from './trust.ts';

export type RepublishOptions = {
  /** Absent when the key is distributed some other way. */
  publisher: Pick<KeyPublisher, 'recheck' | 'activate'> | undefined;
  trust: Pick<TrustPatcher, 'ensureAll'>;
  caBundle: Pick<CaBundleSource, 'onChange'> | undefined;
  isLeader(): boolean;
  /** The namespaces with policies or injected pods. */
  knownNamespaces(): Set<string>;
  /** The injected pods, as the informer holds them. */
  pods(): Iterable<V1Pod>;
  intervalMs: number;
};

/** Returns what stops it. */
export function republishWhileLeading(options: RepublishOptions): () => void {
  const { publisher, trust, isLeader, knownNamespaces, pods } = options;
  // A ConfigMap deleted or edited by hand comes back without waiting for the next
  // event; a pod whose patch failed gets it again.
  const republish = setInterval(() => {
    if (!isLeader()) return;
    publisher?.recheck(knownNamespaces());
    trust.ensureAll(pods());
  }, options.intervalMs);
  republish.unref();
  // A new CA bundle (a rotation, a first pass) goes to every namespace and pod at once.
  const unsubscribe = options.caBundle?.onChange(() => {
    if (!isLeader()) return;
    publisher?.activate(knownNamespaces());
    trust.ensureAll(pods());
  });
  return () => {
    clearInterval(republish);
    unsubscribe?.();
  };
}
