// Marking a Pending approval Expired: on its way to a reader, a use or a long
// poll once its time is up, and by the sweep for any reason it gives.
import { expiryDue } from '@veil/core';
import type { ApprovalStore, Stored } from './store.ts';

/** Why an approval is marked Expired: `message` if any says so on it. */
export type ExpiryDue = { message?: string };

/** Marks a Pending approval Expired once its time is up at `now`; returns the current state. */
export function expireIfDue(store: ApprovalStore, stored: Stored, now: Date): Promise<Stored> {
  return expire(store, stored, expiryDue(stored.spec, stored.status, now) ? {} : undefined);
}

/** Marks a Pending approval Expired, with `due.message` if any; undefined: not due, nothing to do. */
export async function expire(
  store: ApprovalStore,
  stored: Stored,
  due: ExpiryDue | undefined,
): Promise<Stored> {
  if (due === undefined) return stored;
  try {
    // The whole status, as one opened without a status (its first write failed) has none to amend.
    const status = { ...stored.status, phase: 'Expired', ...due };
    return await store.patchStatus(stored, [{ op: 'add', path: '/status', value: status }]);
  } catch {
    // Somebody decided, or another replica expired it, meanwhile: read what is stored.
    return (await store.read(stored.metadata.namespace, stored.metadata.name)) ?? stored;
  }
}
