// Retention status of every object version at the time of the report: is it
// still under a COMPLIANCE lock, and for how long.
import type { StoredObject } from '@veil/core';
import type { EvidenceSet } from '../evidence/load.ts';
import type { ObjectLockInfo } from '../evidence/store.ts';

export const retentionStatuses = [
  'locked',
  'governance',
  'expired',
  'not-locked',
  'delete-marker',
  'not-worm',
] as const;
export type RetentionStatus = (typeof retentionStatuses)[number];

export type RetentionEntry = {
  key: string;
  versionId: string | null;
  isLatest: boolean;
  lockMode: string | null;
  retainUntil: string | null;
  status: RetentionStatus;
  /** Whole days left under lock; negative once expired. */
  daysLeft: number | null;
};

export type Retention = {
  now: string;
  objectLock: ObjectLockInfo | null;
  versioning: string | null;
  counts: Record<RetentionStatus, number>;
  /** The first lock to run out among versions still locked. */
  earliestRetainUntil: string | null;
  objects: RetentionEntry[];
};

const dayMs = 86_400_000;

export function retentionOf(set: EvidenceSet, now: Date): Retention {
  const objects = set.objects.map((object) => entry(object, set.kind === 'local', now));
  const counts = Object.fromEntries(retentionStatuses.map((s) => [s, 0])) as Record<RetentionStatus, number>;
  for (const o of objects) counts[o.status] += 1;
  const locked = objects
    .filter((o) => o.status === 'locked' || o.status === 'governance')
    .map((o) => o.retainUntil as string)
    .sort();
  return {
    now: now.toISOString(),
    objectLock: set.bucket?.objectLock ?? null,
    versioning: set.bucket ? (set.bucket.versioning ?? 'never enabled') : null,
    counts,
    earliestRetainUntil: locked[0] ?? null,
    objects,
  };
}

function entry(object: StoredObject, local: boolean, now: Date): RetentionEntry {
  const retainUntil = object.retainUntil?.toISOString() ?? null;
  const daysLeft = object.retainUntil
    ? Math.floor((object.retainUntil.getTime() - now.getTime()) / dayMs)
    : null;
  return {
    key: object.key,
    versionId: object.versionId ?? null,
    isLatest: object.isLatest,
    lockMode: object.lockMode ?? null,
    retainUntil,
    status: status(object, local, now),
    daysLeft,
  };
}

function status(object: StoredObject, local: boolean, now: Date): RetentionStatus {
  if (local) return 'not-worm';
  if (object.isDeleteMarker) return 'delete-marker';
  if (!object.lockMode || !object.retainUntil) return 'not-locked';
  if (object.retainUntil.getTime() <= now.getTime()) return 'expired';
  return object.lockMode === 'COMPLIANCE' ? 'locked' : 'governance';
}
