// Manifests of evidence format v1: the signed chain that describes a stream.
//
// Numbering: manifests are numbered 0, 1, 2 … per stream (0 is genesis), and a
// batch object takes the seq of the manifest that describes it, so
// batches/00000000000000000001.ndjson.gz is described by manifests/00000000000000000001.json.
// Batch numbers therefore start at 1 and skip the close manifest's seq; the
// pairing is then a lookup by number, and a retried upload targets the same keys.
import { z } from 'zod';
import { batchContentSchema, type EncodedBatch } from './batch.ts';
import { sha256Hex } from './hash.ts';
import { ed25519PublicJwkSchema, type SigningKey } from './keys.ts';
import { sha256HexSchema, timestampSchema } from './record.ts';
import { canonicalJson, signManifest } from './signing.ts';

export const manifestFormat = 'veil.manifest/v1';

/**
 * The largest manifest object a reader takes. A manifest is a few hundred
 * bytes (a genesis with its JWK under a kilobyte, keys at most 1024 bytes
 * each): anything far larger is nothing a sidecar wrote, and parsing it whole
 * (a deeply nested array, say) could exhaust the reader's memory.
 */
export const maxManifestBytes = 64 * 1024;

const objectKey = z.string().min(1).max(1024);

export const manifestLinkSchema = z.strictObject({ key: objectKey, sha256: sha256HexSchema });
export type ManifestLink = z.infer<typeof manifestLinkSchema>;

export const batchRefSchema = batchContentSchema.extend({ key: objectKey });

const common = {
  format: z.literal(manifestFormat),
  stream: z.string().min(1),
  key: objectKey,
  createdAt: timestampSchema,
  keyId: z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'must be an RFC 7638 SHA-256 thumbprint'),
  signature: z.string().regex(/^[A-Za-z0-9_-]{86}$/, 'must be a base64url Ed25519 signature'),
};

export const genesisManifestSchema = z.strictObject({
  ...common,
  kind: z.literal('genesis'),
  seq: z.literal(0),
  prev: z.null(),
  publicKey: ed25519PublicJwkSchema,
});

export const batchManifestSchema = z.strictObject({
  ...common,
  kind: z.literal('batch'),
  seq: z.int().min(1),
  prev: manifestLinkSchema,
  batch: batchRefSchema,
});

export const closeManifestSchema = z.strictObject({
  ...common,
  kind: z.literal('close'),
  seq: z.int().min(1),
  prev: manifestLinkSchema,
  /** Null when the stream closed without a record. */
  lastSeq: z.int().min(0).nullable(),
});

export const manifestSchema = z.discriminatedUnion('kind', [
  genesisManifestSchema,
  batchManifestSchema,
  closeManifestSchema,
]);
export type Manifest = z.infer<typeof manifestSchema>;
export type GenesisManifest = z.infer<typeof genesisManifestSchema>;
export type BatchManifest = z.infer<typeof batchManifestSchema>;
export type CloseManifest = z.infer<typeof closeManifestSchema>;

// ---- object keys --------------------------------------------------------------

/** One sidecar instance: a pod UID and the incarnation of its sidecar container. */
export type StreamRef = { cluster: string; namespace: string; podUid: string; incarnation: string };

const segmentPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/;
const keyPattern =
  /^v1\/([^/]+)\/([^/]+)\/([^/]+)\/([^/]+)\/(?:batches\/(\d{20})\.ndjson\.gz|manifests\/(\d{20})\.json)$/;

/** The stream name records and manifests carry: `<cluster>/<namespace>/<pod-uid>/<incarnation>`. */
export function streamId(ref: StreamRef): string {
  const segments = [ref.cluster, ref.namespace, ref.podUid, ref.incarnation];
  for (const segment of segments) {
    if (!segmentPattern.test(segment))
      throw new RangeError('a stream name segment must be a plain path segment');
  }
  return segments.join('/');
}

/** The parts of a stream name; undefined for anything `streamId` would not have built. */
export function parseStreamId(stream: string): StreamRef | undefined {
  const segments = stream.split('/');
  if (segments.length !== 4 || !segments.every((segment) => segmentPattern.test(segment))) return undefined;
  const [cluster, namespace, podUid, incarnation] = segments as [string, string, string, string];
  return { cluster, namespace, podUid, incarnation };
}

/** `v1/<cluster>/<namespace>/<pod-uid>/<incarnation>/` */
export function streamPrefix(ref: StreamRef): string {
  return `v1/${streamId(ref)}/`;
}

export function batchKey(prefix: string, seq: number): string {
  return `${prefix}batches/${paddedSeq(seq)}.ndjson.gz`;
}

export function manifestKey(prefix: string, seq: number): string {
  return `${prefix}manifests/${paddedSeq(seq)}.json`;
}

function paddedSeq(seq: number): string {
  if (!Number.isSafeInteger(seq) || seq < 0) throw new RangeError('seq must be a non-negative integer');
  return String(seq).padStart(20, '0');
}

export type EvidenceKey = { prefix: string; stream: string; kind: 'batch' | 'manifest'; seq: number };

/** Reads an object key of the v1 layout; null for any key outside it. */
export function parseEvidenceKey(key: string): EvidenceKey | null {
  const match = keyPattern.exec(key);
  if (!match) return null;
  const segments = match.slice(1, 5) as string[];
  if (!segments.every((segment) => segmentPattern.test(segment))) return null;
  const digits = match[5] ?? match[6] ?? '';
  const seq = Number(digits);
  if (!Number.isSafeInteger(seq)) return null;
  const stream = segments.join('/');
  return { prefix: `v1/${stream}/`, stream, kind: match[5] === undefined ? 'manifest' : 'batch', seq };
}

// ---- builders -----------------------------------------------------------------

/** A signed manifest, its object key and the exact bytes to store. */
export type StoredManifest = { key: string; manifest: Manifest; bytes: Uint8Array; sha256: string };

type BuildCommon = { stream: StreamRef; signingKey: SigningKey; createdAt: Date };

export function buildGenesis(options: BuildCommon): StoredManifest {
  const prefix = streamPrefix(options.stream);
  return seal(options.signingKey, {
    ...header(options, manifestKey(prefix, 0)),
    kind: 'genesis',
    seq: 0,
    prev: null,
    publicKey: options.signingKey.publicJwk,
  });
}

/** Describes `batch`, stored at `batchKey(prefix, seq)` where seq follows `prev`. */
export function buildBatchManifest(
  options: BuildCommon & { prev: StoredManifest; batch: EncodedBatch },
): StoredManifest {
  const prefix = streamPrefix(options.stream);
  const seq = nextSeq(options.prev);
  if (options.batch.stream !== streamId(options.stream)) {
    throw new RangeError('the batch holds records of another stream');
  }
  return seal(options.signingKey, {
    ...header(options, manifestKey(prefix, seq)),
    kind: 'batch',
    seq,
    prev: linkTo(options.prev),
    batch: { key: batchKey(prefix, seq), ...options.batch.content },
  });
}

export function buildClose(
  options: BuildCommon & { prev: StoredManifest; lastSeq: number | null },
): StoredManifest {
  const seq = nextSeq(options.prev);
  return seal(options.signingKey, {
    ...header(options, manifestKey(streamPrefix(options.stream), seq)),
    kind: 'close',
    seq,
    prev: linkTo(options.prev),
    lastSeq: options.lastSeq,
  });
}

export function linkTo(stored: StoredManifest): ManifestLink {
  return { key: stored.key, sha256: stored.sha256 };
}

/** Stored manifest bytes are the canonical JSON of the signed manifest. */
export function storeManifest(manifest: Manifest): StoredManifest {
  const bytes = Buffer.from(canonicalJson(manifest), 'utf8');
  return { key: manifest.key, manifest, bytes, sha256: sha256Hex(bytes) };
}

function header(options: BuildCommon, key: string) {
  return {
    format: manifestFormat,
    stream: streamId(options.stream),
    key,
    createdAt: options.createdAt.toISOString(),
    keyId: options.signingKey.keyId,
  } as const;
}

function nextSeq(prev: StoredManifest): number {
  if (prev.manifest.kind === 'close') throw new RangeError('a closed stream takes no further manifest');
  return prev.manifest.seq + 1;
}

type Unsigned<T> = T extends unknown ? Omit<T, 'signature'> : never;

function seal(signingKey: SigningKey, unsigned: Unsigned<Manifest>): StoredManifest {
  const manifest = manifestSchema.parse({ ...unsigned, signature: signManifest(unsigned, signingKey) });
  return storeManifest(manifest);
}
