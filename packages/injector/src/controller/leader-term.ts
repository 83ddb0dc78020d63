// What this replica does on winning and on losing the Lease: only the leader
// pushes, writes status and publishes the key.
import type { Distributor } from './distributor.ts';
import type { LeaderElectionOptions } from './leader.ts';
import type { KeyPublisher } from './publish.ts';
import type { StatusWriter } from './statuswriter.ts';

export type LeaderTermOptions = {
  distributor: Pick<Distributor, 'activate' | 'deactivate'>;
  writer: Pick<StatusWriter, 'activate' | 'deactivate' | 'schedule'>;
  /** Absent when the key is distributed some other way. */
  publisher: Pick<KeyPublisher, 'activate' | 'deactivate'> | undefined;
  /** The namespaces with policies or injected pods. */
  knownNamespaces(): Set<string>;
  /** The keys of the cached policies, each of which gets its status written. */
  policyKeys(): Iterable<string>;
  onLeadershipChange?(leading: boolean): void;
};

export type LeaderTerm = Pick<LeaderElectionOptions, 'onStartedLeading' | 'onStoppedLeading'>;

export function leaderTerm(options: LeaderTermOptions): LeaderTerm {
  const { distributor, writer, publisher } = options;
  return {
    onStartedLeading: () => {
      distributor.activate();
      writer.activate();
      publisher?.activate(options.knownNamespaces());
      for (const key of options.policyKeys()) writer.schedule(key);
      options.onLeadershipChange?.(true);
    },
    onStoppedLeading: () => {
      distributor.deactivate();
      writer.deactivate();
      publisher?.deactivate();
      options.onLeadershipChange?.(false);
    },
  };
}
