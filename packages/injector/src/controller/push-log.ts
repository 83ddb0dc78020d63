// What the controller logs of the distributor's work: pushes that were not
// acknowledged, and every revocation of a deleted policy.
import type { PushEvent, RevokeEvent } from './distributor.ts';
import type { Log } from './log.ts';

export function logPush(log: Log, event: PushEvent): void {
  if (event.outcome.kind !== 'ack') {
    log.warn('push not acknowledged', {
      pod: `${event.pod.namespace}/${event.pod.name}`,
      policy: event.pod.policyKey,
      hash: event.hash,
      outcome: event.outcome.kind,
      reason: event.outcome.reason,
    });
  }
}

export function logRevoke(log: Log, event: RevokeEvent): void {
  const fields = {
    pod: `${event.pod.namespace}/${event.pod.name}`,
    policy: event.pod.policyKey,
    outcome: event.outcome.kind,
  };
  if (event.outcome.kind === 'ack') log.info('deleted policy revoked', fields);
  else log.warn('revocation not acknowledged', { ...fields, reason: event.outcome.reason });
}
