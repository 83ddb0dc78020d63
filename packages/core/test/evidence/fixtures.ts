// Builds an in-memory evidence stream (objects as a bucket listing would give
// them) for the verifier tests to tamper with.
import {
  type AuditRecordInput,
  buildBatchManifest,
  buildClose,
  buildGenesis,
  createUlidGenerator,
  type EncodedBatch,
  encodeBatch,
  encodeRecordLine,
  generateSigningKey,
  type SigningKey,
  type StoredManifest,
  type StoredObject,
  type StreamRef,
  sha256Base64,
  streamId,
  streamPrefix,
  type VerifyOptions,
} from '../../src/evidence/index.ts';

export const now = new Date('2025-06-01T12:00:00.000Z');
const dayMs = 86_400_000;
const writtenAt = new Date(now.getTime() - dayMs);

export const ref: StreamRef = {
  cluster: 'prod-eu',
  namespace: 'ml',
  podUid: '8a1f0c2e-4b7d-4f7e-9d3c-2b1e6f5a9c10',
  incarnation: '0',
};

export const options: VerifyOptions = {
  bucketLock: { enabled: true, mode: 'COMPLIANCE' },
  now,
  minRetentionDays: 365,
};

const ids = createUlidGenerator({ now: () => writtenAt.getTime() });

export function record(stream: string, seq: number): AuditRecordInput {
  return {
    id: ids(),
    time: new Date(writtenAt.getTime() + seq * 1000).toISOString(),
    stream,
    seq,
    outcome: 'allowed',
    status: 200,
    identity: { issuer: 'https://issuer.example', subject: 'alice', groups: ['ml'] },
    pod: { namespace: ref.namespace, name: 'embedder-0', uid: ref.podUid },
    policy: { name: 'default', hash: 'sha256:0f' },
    api: 'openai',
    route: '/v1/embeddings',
    model: 'text-embedding-3-small',
    inputCount: 1,
    latency: { totalMs: 12.5, upstreamMs: 10 },
    vectors: { count: 1, dimensions: 3, digest: 'a'.repeat(64) },
  };
}

/** A record with every optional field set: masking actions, an approval, inputs both ways, all latencies, an error. */
export function fullRecord(stream: string, seq: number): AuditRecordInput {
  return {
    ...record(stream, seq),
    kind: 'request',
    completes: ids(),
    inputs: [{ digest: 'hmac-sha256:00' }, { masked: 'mail [EMAIL]' }],
    masking: [
      { rule: 'pii', detector: 'email', count: 2, field: 'input[1]', operator: 'redact', scope: 'audit' },
    ],
    approval: {
      id: 'apr-1',
      approvers: [{ subject: 'bob', time: '2025-06-01T11:00:00.000Z', reason: 'bulk backfill' }],
      requestedAt: '2025-06-01T10:59:00.000Z',
      decidedAt: '2025-06-01T11:00:00.000Z',
    },
    latency: { totalMs: 80.5, authMs: 0.2, maskMs: 0.3, approvalMs: 60_000, upstreamMs: 12.25, spoolMs: 3 },
    error: 'upstream closed the connection',
  };
}

export function stored(key: string, bytes: Uint8Array, index = 0): StoredObject {
  const lastModified = new Date(writtenAt.getTime() + index * 1000);
  return {
    key,
    versionId: `v${index}`,
    isLatest: true,
    isDeleteMarker: false,
    bytes,
    lastModified,
    checksumSha256: sha256Base64(bytes),
    lockMode: 'COMPLIANCE',
    retainUntil: new Date(lastModified.getTime() + 400 * dayMs),
  };
}

export type StreamSpec = {
  /** Record seqs of each batch, in order. */
  batches: number[][];
  close?: boolean;
  /** What the close manifest claims; the last record's seq by default. */
  closeLastSeq?: number | null;
  /** The key that signs manifest `seq`; the stream key by default. */
  signer?: (seq: number, streamKey: SigningKey) => SigningKey;
  /** Changes a batch before its manifest is built (and signed). */
  editBatch?: (seq: number, batch: EncodedBatch) => EncodedBatch;
  recordFor?: (stream: string, seq: number) => AuditRecordInput;
};

export type BuiltStream = {
  key: SigningKey;
  stream: string;
  prefix: string;
  manifests: StoredManifest[];
  /** Record lines of each batch, by manifest seq. */
  lines: Map<number, string[]>;
  objects: StoredObject[];
};

export function buildStream(spec: StreamSpec, key = generateSigningKey()): BuiltStream {
  const stream = streamId(ref);
  const signer = (seq: number) => spec.signer?.(seq, key) ?? key;
  const recordFor = spec.recordFor ?? record;
  const objects: StoredObject[] = [];
  const lines = new Map<number, string[]>();
  let prev = buildGenesis({ stream: ref, signingKey: key, createdAt: writtenAt });
  const manifests = [prev];
  objects.push(stored(prev.key, prev.bytes, 0));
  for (const seqs of spec.batches) {
    const seq = prev.manifest.seq + 1;
    const batchLines = seqs.map((s) => encodeRecordLine(recordFor(stream, s)));
    const encoded = encodeBatch(batchLines);
    const batch = spec.editBatch?.(seq, encoded) ?? encoded;
    prev = buildBatchManifest({ stream: ref, signingKey: signer(seq), createdAt: writtenAt, prev, batch });
    manifests.push(prev);
    lines.set(seq, batchLines);
    if (prev.manifest.kind !== 'batch') throw new Error('expected a batch manifest');
    objects.push(stored(prev.manifest.batch.key, encoded.bytes, objects.length));
    objects.push(stored(prev.key, prev.bytes, objects.length));
  }
  if (spec.close ?? true) {
    const lastSeq =
      spec.closeLastSeq === undefined ? (spec.batches.flat().at(-1) ?? null) : spec.closeLastSeq;
    const seq = prev.manifest.seq + 1;
    prev = buildClose({ stream: ref, signingKey: signer(seq), createdAt: writtenAt, prev, lastSeq });
    manifests.push(prev);
    objects.push(stored(prev.key, prev.bytes, objects.length));
  }
  return { key, stream, prefix: streamPrefix(ref), manifests, lines, objects };
}

/** The one version at `key`; throws when there is none. */
export function objectAt(objects: readonly StoredObject[], key: string): StoredObject {
  const found = objects.find((o) => o.key === key);
  if (!found) throw new Error(`no object at ${key}`);
  return found;
}

export function replaceAt(objects: readonly StoredObject[], key: string, bytes: Uint8Array): StoredObject[] {
  return objects.map((o) => (o.key === key ? { ...o, bytes, checksumSha256: sha256Base64(bytes) } : o));
}
