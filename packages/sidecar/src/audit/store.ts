// Where shipped evidence goes. Keys are deterministic, so a retry targets the
// key it tried before; a store writes each key once and never replaces it.

export type EvidenceObject = {
  /** An evidence-format key, `v1/<cluster>/<namespace>/<pod-uid>/<incarnation>/…`. */
  key: string;
  bytes: Uint8Array;
  /** Lower-case hex SHA-256 of `bytes`. */
  sha256: string;
  /** Kept unchangeable at least until then (where the store can lock). */
  retainUntil: Date;
};

/**
 * Added by the shipper to every lock beyond the policy's retention. An auditor
 * counts the retention from when the store wrote the object (its
 * Last-Modified, after the upload, by the store's clock), so a lock of exactly
 * the policy's days from the shipper's clock would fall short by the upload
 * time and any skew. A lock found already in place may fall short of the one
 * asked for by as much: it still holds the policy's retention.
 */
export const retentionMarginMs = 10 * 60 * 1000;

export interface EvidenceStore {
  /** Where the evidence goes, for logs: no credentials. */
  readonly description: string;
  /**
   * Resolves once the object is stored for good. A key already holding the
   * same bytes, locked as asked, counts as stored (a retry after a lost
   * answer); other bytes make it reject with `EvidenceConflictError`, the same
   * bytes without that lock with `EvidenceNotLockedError`.
   */
  put(object: EvidenceObject, signal?: AbortSignal): Promise<void>;
  close(): void;
}

/** The key holds other bytes: nothing may replace evidence, so the shipper cannot go on. */
export class EvidenceConflictError extends Error {
  override name = 'EvidenceConflictError';
}

/**
 * The key holds these bytes but not locked in COMPLIANCE mode for the
 * retention asked: it is no evidence an auditor accepts, and the store keeps
 * it, so retrying cannot fix it without an operator.
 */
export class EvidenceNotLockedError extends Error {
  override name = 'EvidenceNotLockedError';
}

/** What an operator must fix in the store's set-up; retrying alone cannot. */
export type StoreSetupProblem = 'no-object-lock' | 'no-bucket' | 'credentials';

/** The store refused the upload for its set-up, not for an outage. */
export class EvidenceStoreSetupError extends Error {
  override name = 'EvidenceStoreSetupError';
  readonly problem: StoreSetupProblem;
  /** The store's own name for the refusal (`NoSuchBucket`, `AccessDenied`, …). */
  readonly code: string;

  constructor(problem: StoreSetupProblem, code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.problem = problem;
    this.code = code;
  }
}
