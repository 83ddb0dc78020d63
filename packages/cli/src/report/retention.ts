// Retention status of every object version at the time of the report: is it
// still under a COMPLIANCE lock, and for how long.
import { retainedTooShort, type StoredObject } from '@veil/core';
import type { EvidenceSet } from '../evidence/load.ts';
import type { ObjectLockInfo } from '../evidence/store.ts';

/** `locked` first: every other status is not safely locked. */
export const retentionStatuses = [
  'locked',
  'too-short',
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

/** `minRetentionDays`: what the verification checked locks against, if anything. */
export function retentionOf(set: EvidenceSet, now: Date, minRetentionDays: number | undefined): Retention {
  const check: StatusCheck = { local: set.kind === 'local', now, minRetentionDays };
  const objects = set.objects.map((object) => entry(object, check));
  const counts = Object.fromEntries(retentionStatuses.map((s) => [s, 0])) as Record<RetentionStatus, number>;
  for (const o of objects) counts[o.status] += 1;
  // A lock too short may have run out already: only those still holding count.
  const locked = objects
    .filter((o) => stillLocked.has(o.status))
    .map((o) => o.retainUntil as string)
    .filter((until) => Date.parse(until) > now.getTime())
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

const stillLocked: ReadonlySet<RetentionStatus> = new Set(['locked', 'too-short', 'governance']);

type StatusCheck = { local: boolean; now: Date; minRetentionDays: number | undefined };

function entry(object: StoredObject, check: StatusCheck): RetentionEntry {
  const { now } = check;
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
    status: status(object, check),
    daysLeft,
  };
}

function status(object: StoredObject, { local, now, minRetentionDays }: StatusCheck): RetentionStatus {
  if (local) return 'not-worm';
  if (object.isDeleteMarker) return 'delete-marker';
  if (!object.lockMode || !object.retainUntil) return 'not-locked';
  // As the verifier judges it: a COMPLIANCE lock too short is INVALID, expired or not.
  const tooShort = minRetentionDays !== undefined && retainedTooShort(object, minRetentionDays, now);
  if (object.lockMode === 'COMPLIANCE' && tooShort) return 'too-short';
  if (object.retainUntil.getTime() <= now.getTime()) return 'expired';
  return object.lockMode === 'COMPLIANCE' ? 'locked' : 'governance';
}
