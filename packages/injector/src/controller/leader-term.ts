// What this replica does on winning and on losing the Lease: only the leader
// pushes, writes status, publishes the key and patches pods' trust annotations.
import type { V1Pod } from '@kubernetes/client-node';
import type { Distributor } from './distributor.ts';
import type { LeaderElectionOptions } from './leader.ts';
import type { KeyPublisher } from './publish.ts';
import type { StatusWriter } from './statuswriter.ts';
import type { TrustPatcher } from './trust.ts';

export type LeaderTermOptions = {
  distributor: Pick<Distributor, 'activate' | 'deactivate'>;
  writer: Pick<StatusWriter, 'activate' | 'deactivate' | 'schedule'>;
  /** Absent when the key is distributed some other way. */
  publisher: Pick<KeyPublisher, 'activate' | 'deactivate'> | undefined;
  trust: Pick<TrustPatcher, 'activate' | 'deactivate'>;
  /** The injected pods, as the informer holds them. */
  pods(): Iterable<V1Pod>;
  /** The namespaces with policies or injected pods. */
  knownNamespaces(): Set<string>;
  /** The keys of the cached policies, each of which gets its status written. */
  policyKeys(): Iterable<string>;
  onLeadershipChange?(leading: boolean): void;
};

export type LeaderTerm = Pick<LeaderElectionOptions, 'onStartedLeading' | 'onStoppedLeading'>;

export function leaderTerm(options: LeaderTermOptions): LeaderTerm {
  const { distributor, writer, publisher, trust } = options;
  return {
    onStartedLeading: () => {
      distributor.activate();
      writer.activate();
      publisher?.activate(options.knownNamespaces());
      trust.activate(options.pods());
      for (const key of options.policyKeys()) writer.schedule(key);
      options.onLeadershipChange?.(true);
    },
    onStoppedLeading: () => {
      distributor.deactivate();
      writer.deactivate();
      publisher?.deactivate();
      trust.deactivate();
      options.onLeadershipChange?.(false);
    },
  };
}
