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

export interface EvidenceStore {
  /** Where the evidence goes, for logs: no credentials. */
  readonly description: string;
  /**
   * Resolves once the object is stored for good. A key already holding the
   * same bytes counts as stored (a retry after a lost answer); other bytes
   * make it reject with `EvidenceConflictError`.
   */
  put(object: EvidenceObject, signal?: AbortSignal): Promise<void>;
  close(): void;
}

/** The key holds other bytes: nothing may replace evidence, so the shipper cannot go on. */
export class EvidenceConflictError extends Error {
  override name = 'EvidenceConflictError';
}
