// Keeps the key's ConfigMaps current while this replica leads, between the
// events that publish them.
import type { CaBundleSource } from '../certs/cabundle.ts';
import type { KeyPublisher } from './publish.ts';

export type RepublishOptions = {
  /** Absent when the key is distributed some other way. */
  publisher: Pick<KeyPublisher, 'recheck' | 'activate'> | undefined;
  caBundle: Pick<CaBundleSource, 'onChange'> | undefined;
  isLeader(): boolean;
  /** The namespaces with policies or injected pods. */
  knownNamespaces(): Set<string>;
  intervalMs: number;
};

/** Returns what stops it. */
export function republishWhileLeading(options: RepublishOptions): () => void {
  const { publisher, isLeader, knownNamespaces } = options;
  // A ConfigMap deleted or edited by hand comes back without waiting for the next event.
  const republish = setInterval(() => {
    if (isLeader()) publisher?.recheck(knownNamespaces());
  }, options.intervalMs);
  republish.unref();
  // A new CA bundle (a rotation, a first pass) goes to every namespace at once.
  const unsubscribe = options.caBundle?.onChange(() => {
    if (isLeader()) publisher?.activate(knownNamespaces());
  });
  return () => {
    clearInterval(republish);
    unsubscribe?.();
  };
}
