// Evidence built with core's builders, as a sidecar would write it, for the
// CLI tests: stored in a local directory, or uploaded to a real S3 server with
// COMPLIANCE locks and SHA-256 checksums, as the shipper does.
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import {
  type AuditRecord,
  type AuditRecordInput,
  auditRecordSchema,
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
  type StreamRef,
  sha256Base64,
  streamId,
  streamPrefix,
} from '@veil/core';
import type { Io } from '../../src/evidence/io.ts';

export type EvidenceObject = { key: string; bytes: Uint8Array };

export type StreamSpec = {
  ref?: StreamRef;
  /** Record seqs of each batch, in order. */
  batches: number[][];
  close?: boolean;
  /** The key that signs manifest `seq`; the stream key by default. */
  signer?: (seq: number, streamKey: SigningKey) => SigningKey;
  recordFor?: (stream: string, seq: number, ref: StreamRef) => AuditRecordInput;
};

export type BuiltStream = {
  key: SigningKey;
  stream: string;
  prefix: string;
  manifests: StoredManifest[];
  /** Record lines of each batch, by the seq of the manifest describing it. */
  lines: Map<number, string[]>;
  batches: Map<number, EncodedBatch>;
  records: AuditRecord[];
  /** In the order a shipper uploads them: each batch before its manifest. */
  objects: EvidenceObject[];
};

export function streamRef(podUid = '8a1f0c2e-4b7d-4f7e-9d3c-2b1e6f5a9c10', incarnation = '0'): StreamRef {
  return { cluster: 'prod-eu', namespace: 'ml', podUid, incarnation };
}

/** Two seconds before midnight UTC, so a stream's records fall on two days. */
const base = Date.parse('2025-06-01T23:59:58.000Z');
const createdAt = new Date(base);

/**
 * A varied record: every fifth unauthenticated, every fifth (from 3) denied,
 * every third masked, every fourth approved; alice on even seqs, bob on odd.
 */
export function sampleRecord(stream: string, seq: number, ref: StreamRef): AuditRecordInput {
  const ids = createUlidGenerator({ now: () => base + seq * 1000 });
  const unauthenticated = seq % 5 === 4;
  const denied = seq % 5 === 3;
  const subject = seq % 2 === 0 ? 'alice' : 'bob';
  return {
    id: ids(),
    time: new Date(base + seq * 1000).toISOString(),
    stream,
    seq,
    outcome: unauthenticated ? 'unauthenticated' : denied ? 'denied' : 'allowed',
    status: unauthenticated ? 401 : denied ? 403 : 200,
    identity: unauthenticated ? null : { issuer: 'https://issuer.example', subject, groups: ['ml'] },
    pod: { namespace: ref.namespace, name: 'embedder-0', uid: ref.podUid },
    policy: { name: 'default', hash: 'sha256:0f' },
    api: 'openai',
    route: '/v1/embeddings',
    model: 'text-embedding-3-small',
    inputCount: 2,
    masking:
      seq % 3 === 0
        ? [
            {
              rule: 'pii',
              detector: 'email',
              count: 2,
              field: 'input[0]',
              operator: 'redact',
              scope: 'forward',
            },
            { rule: 'pii', detector: 'phone', count: 1, field: 'input[1]', operator: 'hash', scope: 'audit' },
          ]
        : [],
    ...(seq % 4 === 1
      ? {
          approval: {
            id: `ap-${seq}`,
            approvers: [{ subject: 'carol', time: new Date(base + seq * 1000 - 500).toISOString() }],
            requestedAt: new Date(base + seq * 1000 - 900).toISOString(),
            decidedAt: new Date(base + seq * 1000 - 500).toISOString(),
          },
        }
      : {}),
    latency: { totalMs: 12.5, upstreamMs: 10 },
    vectors: { count: 2, dimensions: 3, digest: 'a'.repeat(64) },
  };
}

export function buildStream(spec: StreamSpec, key = generateSigningKey()): BuiltStream {
  const ref = spec.ref ?? streamRef();
  const stream = streamId(ref);
  const signer = (seq: number) => spec.signer?.(seq, key) ?? key;
  const recordFor = spec.recordFor ?? sampleRecord;
  const objects: EvidenceObject[] = [];
  const lines = new Map<number, string[]>();
  const batches = new Map<number, EncodedBatch>();
  const records: AuditRecord[] = [];
  let prev = buildGenesis({ stream: ref, signingKey: key, createdAt });
  const manifests = [prev];
  objects.push({ key: prev.key, bytes: prev.bytes });
  for (const seqs of spec.batches) {
    const seq = prev.manifest.seq + 1;
    const batchLines = seqs.map((s) => encodeRecordLine(recordFor(stream, s, ref)));
    const batch = encodeBatch(batchLines);
    prev = buildBatchManifest({ stream: ref, signingKey: signer(seq), createdAt, prev, batch });
    if (prev.manifest.kind !== 'batch') throw new Error('expected a batch manifest');
    manifests.push(prev);
    lines.set(seq, batchLines);
    batches.set(seq, batch);
    records.push(...batchLines.map((line) => auditRecordSchema.parse(JSON.parse(line))));
    objects.push({ key: prev.manifest.batch.key, bytes: batch.bytes });
    objects.push({ key: prev.key, bytes: prev.bytes });
  }
  if (spec.close ?? true) {
    const seq = prev.manifest.seq + 1;
    const lastSeq = spec.batches.flat().at(-1) ?? null;
    prev = buildClose({ stream: ref, signingKey: signer(seq), createdAt, prev, lastSeq });
    manifests.push(prev);
    objects.push({ key: prev.key, bytes: prev.bytes });
  }
  return { key, stream, prefix: streamPrefix(ref), manifests, lines, batches, records, objects };
}

/** The sidecar's local evidence store: the same keys as plain files under `dir`. */
export async function writeLocalStore(dir: string, objects: readonly EvidenceObject[]): Promise<void> {
  for (const object of objects) {
    const file = join(dir, ...object.key.split('/'));
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, object.bytes);
  }
}

/** Uploads as the shipper does: COMPLIANCE lock, SHA-256 checksum, never a second version. */
export async function upload(
  client: S3Client,
  bucket: string,
  objects: readonly EvidenceObject[],
  options: { retainUntil?: Date } = {},
): Promise<void> {
  for (const object of objects) {
    await client.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: object.key,
        Body: object.bytes,
        ChecksumSHA256: sha256Base64(object.bytes),
        IfNoneMatch: '*',
        ...(options.retainUntil
          ? { ObjectLockMode: 'COMPLIANCE', ObjectLockRetainUntilDate: options.retainUntil }
          : {}),
      }),
    );
  }
}

export type CapturedIo = { io: Io; out: string[]; err: () => string };

/** An Io that records what a command prints, with a fixed clock. */
export function captureIo(now: Date): CapturedIo {
  const out: string[] = [];
  let err = '';
  return {
    io: {
      out: (line) => out.push(line),
      err: { isTTY: false, write: (text: string) => (err += text) },
      now: () => now,
    },
    out,
    err: () => err,
  };
}
