// The evidence verifier: a pure function from the objects of a bucket (every
// version, delete markers included) to findings. Each check has its own code so
// an auditor can tell what failed; INVALID means the evidence cannot be relied
// on, WARN that it can but something needs an explanation.

import { globMatcher } from '../policy/glob.ts';
import { type DecodedLine, decodeLine, forEachLine, inflateBatch } from './batch.ts';
import { sha256Base64, sha256Hex } from './hash.ts';
import { jwkThumbprint } from './keys.ts';
import {
  type BatchManifest,
  batchKey,
  type CloseManifest,
  type GenesisManifest,
  type Manifest,
  manifestKey,
  manifestSchema,
  maxManifestBytes,
  parseEvidenceKey,
  parseStreamId,
} from './manifest.ts';
import { MerkleTree } from './merkle.ts';
import { printable } from './printable.ts';
import type { AuditRecord } from './record.ts';
import { matchCompletions } from './requests.ts';
import { canonicalJson, verifyManifestSignature } from './signing.ts';

export type LockMode = 'COMPLIANCE' | 'GOVERNANCE';

/** One object version as listed (ListObjectVersions) and fetched. */
export type StoredObject = {
  key: string;
  versionId?: string;
  isLatest: boolean;
  isDeleteMarker: boolean;
  bytes?: Uint8Array;
  lastModified?: Date;
  /** Base64, as S3 returns `x-amz-checksum-sha256`. */
  checksumSha256?: string;
  lockMode?: LockMode;
  retainUntil?: Date;
};

export type BucketLock = { enabled: boolean; mode?: LockMode };

export type VerifyOptions = {
  /** The bucket's Object Lock configuration; `local` for evidence kept on a plain file system. */
  bucketLock?: BucketLock | 'local';
  now: Date;
  /** Every object must be locked at least this long after it was written. */
  minRetentionDays?: number;
  /** The keys a genesis manifest may register; a key listed more than once may sign any of its streams. */
  trustedKeys?: readonly TrustedKey[];
};

/** A key (RFC 7638 thumbprint) an auditor trusts, and the stream names (a glob) it may sign; any stream without one. */
export type TrustedKey = { keyId: string; streams?: string };

export const findingCodes = [
  'bucket-lock-missing',
  'bucket-lock-disabled',
  'bucket-lock-default',
  'not-worm',
  'object-not-locked',
  'retention-too-short',
  'retention-expired',
  'replaced-object',
  'rewritten-object',
  'versions-not-compared',
  'hidden-object',
  'missing-bytes',
  'checksum-mismatch',
  'foreign-object',
  'manifest-malformed',
  'key-mismatch',
  'stream-mismatch',
  'pod-mismatch',
  'missing-genesis',
  'key-id-mismatch',
  'untrusted-key',
  'unknown-key',
  'signature-invalid',
  'chain-break',
  'after-close',
  'missing-batch',
  'batch-checksum-mismatch',
  'batch-misplaced',
  'batch-malformed',
  'merkle-mismatch',
  'record-malformed',
  'batch-range-mismatch',
  'seq-gap',
  'seq-conflict',
  'duplicate-record',
  'incomplete-record',
  'completion-mismatch',
  'close-mismatch',
  'unclosed-stream',
  'orphan-object',
  'keys-not-pinned',
  'retention-not-checked',
  'checksum-missing',
] as const;
export type FindingCode = (typeof findingCodes)[number];
export type FindingLevel = 'INVALID' | 'WARN';

export type Finding = {
  level: FindingLevel;
  stream: string;
  key: string;
  code: FindingCode;
  message: string;
};

export type StreamSummary = {
  stream: string;
  prefix: string;
  keyId: string | null;
  manifests: number;
  batches: number;
  records: number;
  firstSeq: number | null;
  lastSeq: number | null;
  firstTime: string | null;
  lastTime: string | null;
  closed: boolean;
  /** Requests recorded up to their forwarding and no further: a first part nothing completes. */
  incomplete: number;
  /** No INVALID finding names this stream or the bucket as a whole. */
  valid: boolean;
};

export type VerifyTotals = {
  streams: number;
  batches: number;
  /** Record lines: a forwarded request has two, its first part and the record completing it. */
  records: number;
  /** Each request once, however many parts it was recorded in. */
  requests: number;
  gaps: number;
  incomplete: number;
};

export type VerifyResult = {
  findings: Finding[];
  streams: StreamSummary[];
  totals: VerifyTotals;
  /** Validated records of the batches that passed their checksum, stream by stream in seq order. */
  records: AuditRecord[];
};

/** For findings that belong to no stream. */
const noStream = '-';
const dayMs = 86_400_000;

type Report = (level: FindingLevel, stream: string, key: string, code: FindingCode, message: string) => void;

export function verifyEvidence(objects: readonly StoredObject[], options: VerifyOptions): VerifyResult {
  const findings: Finding[] = [];
  const report: Report = (level, stream, key, code, message) => {
    findings.push({ level, stream, key, code, message });
  };
  checkBucket(options.bucketLock, report);
  checkRetentionAsked(options, report);
  const originals = new Map<string, StoredObject>();
  for (const [key, versions] of groupBy(objects, (object) => object.key)) {
    const original = checkVersions(key, versions, options, report);
    if (original) originals.set(key, original);
  }
  const streams: StreamSummary[] = [];
  const records: AuditRecord[] = [];
  let gaps = 0;
  let requests = 0;
  for (const layout of groupStreams(originals, report)) {
    const result = verifyStream(layout, options, report);
    streams.push(result.summary);
    records.push(...result.records);
    gaps += result.gaps;
    requests += result.requests;
  }
  // A bucket that locks nothing fails every stream in it, not the verdict alone.
  const bucketInvalid = findings.some((f) => f.level === 'INVALID' && isBucketWide(f));
  for (const summary of streams) {
    summary.valid =
      !bucketInvalid && !findings.some((f) => f.level === 'INVALID' && f.stream === summary.stream);
  }
  const totals: VerifyTotals = {
    streams: streams.length,
    batches: sum(streams, (s) => s.batches),
    records: records.length,
    requests,
    gaps,
    incomplete: sum(streams, (s) => s.incomplete),
  };
  return { findings, streams, totals, records };
}

/** `INVALID <stream> <key>: <message>`. Keys and manifest fields come from the bucket: a control character in one must not forge a line of output. */
export function formatFinding(finding: Finding): string {
  return `${finding.level} ${printable(finding.stream)} ${printable(finding.key)}: ${printable(finding.message)}`;
}

export function summaryLine(totals: VerifyTotals): string {
  const line = `${totals.streams} streams, ${totals.batches} batches, ${totals.records} records verified, ${totals.gaps} gaps`;
  return totals.incomplete > 0 ? `${line}, ${totals.incomplete} incomplete` : line;
}

/** A finding about the bucket or the evidence set as a whole, not about one object in it. */
export function isBucketWide(finding: Finding): boolean {
  return finding.stream === noStream && finding.key === noStream;
}

// ---- bucket and object versions ---------------------------------------------

function checkBucket(lock: VerifyOptions['bucketLock'], report: Report): void {
  if (lock === 'local') {
    report(
      'WARN',
      noStream,
      noStream,
      'not-worm',
      'evidence read from a local directory is not WORM storage',
    );
  } else if (lock === undefined) {
    report(
      'INVALID',
      noStream,
      noStream,
      'bucket-lock-missing',
      'the bucket Object Lock configuration is unknown',
    );
  } else if (!lock.enabled) {
    report('INVALID', noStream, noStream, 'bucket-lock-disabled', 'Object Lock is not enabled on the bucket');
  } else if (lock.mode !== undefined && lock.mode !== 'COMPLIANCE') {
    report('WARN', noStream, noStream, 'bucket-lock-default', `the bucket default retention is ${lock.mode}`);
  }
}

/** Says when no retention length was asked for, or none can be shown: silence would read as a pass. */
function checkRetentionAsked(options: VerifyOptions, report: Report): void {
  const days = options.minRetentionDays;
  if (options.bucketLock === 'local') {
    if (days === undefined) return;
    // Files lock nothing: a retention asked for cannot be shown.
    const message = `evidence read from a local directory is retained by nothing, not ${days} days`;
    report('INVALID', noStream, noStream, 'retention-too-short', message);
  } else if (days === undefined) {
    // Any COMPLIANCE lock passes then, even one of a second.
    const message = 'retention length not checked: pass --min-retention-days';
    report('WARN', noStream, noStream, 'retention-not-checked', message);
  }
}

/** Whether two versions hold the same bytes, or nothing at hand can tell. */
type Comparison = 'same' | 'different' | 'unknown';

/** How the later versions compare with the first: `different` if any differs, else `unknown` if any cannot be told. */
function compareWithFirst(data: readonly StoredObject[]): Comparison {
  const [first, ...later] = data;
  if (first === undefined) return 'same';
  const comparisons = later.map((version) => compareVersions(first, version));
  if (comparisons.includes('different')) return 'different';
  return comparisons.includes('unknown') ? 'unknown' : 'same';
}

/**
 * Compared in place (as `noteSeq` compares records); where the bytes of either
 * were not fetched (a pull keeps none of a key outside the evidence layout),
 * by the SHA-256 S3 stored with each (a version's bytes are checked against
 * its own elsewhere). Without that, as S3 keeps none for an upload made
 * without a checksum, nothing tells them apart or alike.
 */
function compareVersions(a: StoredObject, b: StoredObject): Comparison {
  if (a.bytes !== undefined && b.bytes !== undefined) {
    return Buffer.compare(a.bytes, b.bytes) === 0 ? 'same' : 'different';
  }
  if (a.checksumSha256 === undefined || b.checksumSha256 === undefined) return 'unknown';
  return a.checksumSha256 === b.checksumSha256 ? 'same' : 'different';
}

/** Flags extra versions, delete markers and weak locks; returns the version to verify. */
function checkVersions(
  key: string,
  versions: readonly StoredObject[],
  options: VerifyOptions,
  report: Report,
): StoredObject | undefined {
  const stream = parseEvidenceKey(key)?.stream ?? noStream;
  const markers = versions.filter((v) => v.isDeleteMarker).length;
  // Under Object Lock a version cannot change, only gain a successor: the first one is the evidence.
  const data = versions.filter((v) => !v.isDeleteMarker).sort(byLastModified);
  if (markers > 0) report('INVALID', stream, key, 'hidden-object', `hidden by ${markers} delete marker(s)`);
  const comparison = data.length > 1 ? compareWithFirst(data) : 'same';
  if (comparison === 'same' && data.length > 1) {
    // An upload retried while the first was still under way (a process killed
    // mid-upload, then restarted) can slip past a store's If-None-Match: the
    // same bytes again, which alter nothing.
    report(
      'WARN',
      stream,
      key,
      'rewritten-object',
      `${data.length} versions, all with the same bytes: the object was written again unchanged`,
    );
  } else if (comparison === 'unknown') {
    const message = `${data.length} versions that cannot be compared: their bytes were not fetched and the store kept no SHA-256 of them`;
    report('WARN', stream, key, 'versions-not-compared', message);
  } else if (comparison === 'different') {
    report(
      'INVALID',
      stream,
      key,
      'replaced-object',
      `${data.length} versions: the object was written again`,
    );
  }
  for (const version of data) {
    if (options.bucketLock !== 'local') {
      checkLock(stream, key, version, options, report);
      checkChecksumStored(stream, key, version, report);
    }
    if (version.bytes && version.checksumSha256 !== undefined) {
      if (version.checksumSha256 !== sha256Base64(version.bytes)) {
        report(
          'INVALID',
          stream,
          key,
          'checksum-mismatch',
          `${describe(version)} does not match its stored SHA-256`,
        );
      }
    }
  }
  return data[0];
}

function checkLock(
  stream: string,
  key: string,
  version: StoredObject,
  options: VerifyOptions,
  report: Report,
): void {
  if (version.lockMode !== 'COMPLIANCE' || version.retainUntil === undefined) {
    const lock = version.lockMode ?? 'not locked';
    report(
      'INVALID',
      stream,
      key,
      'object-not-locked',
      `${describe(version)} is ${lock}; evidence needs COMPLIANCE`,
    );
    return;
  }
  if (
    options.minRetentionDays !== undefined &&
    retainedTooShort(version, options.minRetentionDays, options.now)
  ) {
    const until = version.retainUntil.toISOString();
    const message = `${describe(version)} is retained until ${until}, less than ${options.minRetentionDays} days`;
    report('INVALID', stream, key, 'retention-too-short', message);
  }
  if (version.retainUntil.getTime() <= options.now.getTime()) {
    report('WARN', stream, key, 'retention-expired', `${describe(version)} is no longer locked`);
  }
}

/**
 * Whether a version's lock ends sooner than `minRetentionDays` after it was
 * written (`now` when its time is unknown). Shared with the report, so its
 * retention table says what the findings say.
 */
export function retainedTooShort(version: StoredObject, minRetentionDays: number, now: Date): boolean {
  if (version.retainUntil === undefined) return false;
  const written = (version.lastModified ?? now).getTime();
  return version.retainUntil.getTime() < written + minRetentionDays * dayMs;
}

/** DESIGN puts a SHA-256 on every PUT: without one, nothing the store holds vouches for the bytes. */
function checkChecksumStored(stream: string, key: string, version: StoredObject, report: Report): void {
  if (version.checksumSha256 !== undefined) return;
  const message = `${describe(version)} was stored without a full-object SHA-256 checksum`;
  report('WARN', stream, key, 'checksum-missing', message);
}

function describe(version: StoredObject): string {
  return version.versionId === undefined ? 'the object' : `version ${version.versionId}`;
}

/**
 * Oldest first. S3 keeps Last-Modified to the second, so a version written
 * within the second of the one before ties with it: of two, the latest is the
 * later (its predecessor, the evidence, is not the latest).
 */
function byLastModified(a: StoredObject, b: StoredObject): number {
  const byTime = (a.lastModified?.getTime() ?? 0) - (b.lastModified?.getTime() ?? 0);
  return byTime !== 0 ? byTime : Number(a.isLatest) - Number(b.isLatest);
}

// ---- layout -----------------------------------------------------------------

type Located = { key: string; object: StoredObject };
type StreamLayout = {
  stream: string;
  prefix: string;
  manifests: Map<number, Located>;
  batches: Map<number, Located>;
};

function groupStreams(originals: ReadonlyMap<string, StoredObject>, report: Report): StreamLayout[] {
  const layouts = new Map<string, StreamLayout>();
  for (const [key, object] of [...originals].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const parsed = parseEvidenceKey(key);
    if (!parsed) {
      report('WARN', noStream, key, 'foreign-object', 'not an object of the evidence layout');
      continue;
    }
    let layout = layouts.get(parsed.stream);
    if (!layout) {
      layout = { stream: parsed.stream, prefix: parsed.prefix, manifests: new Map(), batches: new Map() };
      layouts.set(parsed.stream, layout);
    }
    (parsed.kind === 'manifest' ? layout.manifests : layout.batches).set(parsed.seq, { key, object });
  }
  return [...layouts.values()];
}

// ---- one stream ---------------------------------------------------------------

type Entry<M extends Manifest = Manifest> = { key: string; manifest: M; sha256: string };
/** The manifests that link to the one before. */
type LinkedManifest = BatchManifest | CloseManifest;

type StreamState = {
  layout: StreamLayout;
  options: VerifyOptions;
  report: Report;
  /** Record line bytes by seq, to tell a re-shipped duplicate from a conflict. */
  seen: Map<number, Uint8Array>;
  records: AuditRecord[];
  /** The batch key each record was read from, for findings about it. */
  keys: Map<AuditRecord, string>;
};

type StreamResult = { summary: StreamSummary; records: AuditRecord[]; requests: number; gaps: number };

function verifyStream(layout: StreamLayout, options: VerifyOptions, report: Report): StreamResult {
  const { stream, prefix } = layout;
  const state: StreamState = { layout, options, report, seen: new Map(), records: [], keys: new Map() };
  const entries = readManifests(layout, report);
  // The schema gives a genesis manifest seq 0, and any other seq 1 or more.
  const genesis = entries.get(0) as Entry<GenesisManifest> | undefined;
  if (!genesis) missingGenesis(state);
  const trusted = genesis !== undefined && checkGenesis(genesis, state);
  // Up to the last readable manifest: past it nothing tells what should exist.
  const lastManifestSeq = [...entries.keys()].reduce((max, seq) => Math.max(max, seq), -1);
  const batches: Entry<BatchManifest>[] = [];
  let close: Entry<CloseManifest> | undefined;
  let gaps = 0;
  // Only the seqs present are walked, and a missing run is one finding: a
  // manifest planted at seq 2^53 must cost no more than any other.
  const present = [...layout.manifests.keys()]
    .filter((seq) => seq >= 1 && seq <= lastManifestSeq)
    .sort((a, b) => a - b);
  const owners = batchOwners(entries);
  let expected = 1;
  for (const seq of present) {
    if (seq > expected) {
      const missing =
        seq - 1 === expected
          ? `manifest ${expected} is missing`
          : `manifests ${expected}..${seq - 1} are missing`;
      report('INVALID', stream, manifestKey(prefix, expected), 'chain-break', missing);
      gaps += 1;
    }
    expected = seq + 1;
    const entry = entries.get(seq) as Entry<LinkedManifest> | undefined;
    // A manifest present but unreadable was reported when it was read.
    if (!entry) continue;
    // A genesis that failed its own checks vouches for nothing, so nothing it keys is signed.
    const signed = checkLink(entry, entries.get(seq - 1), genesis, state) && trusted;
    if (close) {
      report('INVALID', stream, entry.key, 'after-close', `written after the closing manifest ${close.key}`);
    }
    const { manifest } = entry;
    if (manifest.kind === 'batch') {
      const batchEntry = { ...entry, manifest };
      batches.push(batchEntry);
      checkBatch(batchEntry, owners, state, signed);
    } else if (manifest.kind === 'close' && !close) {
      close = { ...entry, manifest };
    }
  }
  gaps += checkContinuity(batches, state);
  const requests = checkCompletions(state);
  checkClose(close, batches, state);
  checkOrphans(entries, close, lastManifestSeq, state);
  const first = batches[0]?.manifest.batch;
  const times = batches.map((b) => b.manifest.batch);
  return {
    summary: {
      stream,
      prefix,
      keyId: genesis?.manifest.keyId ?? null,
      manifests: entries.size,
      batches: batches.length,
      records: state.records.length,
      firstSeq: first?.firstSeq ?? null,
      lastSeq: highestSeq(batches),
      firstTime: times.length ? times.map((b) => b.firstTime).reduce(earliest) : null,
      lastTime: times.length ? times.map((b) => b.lastTime).reduce(latest) : null,
      closed: close !== undefined,
      incomplete: requests.incomplete,
      valid: true,
    },
    records: state.records,
    requests: requests.count,
    gaps,
  };
}

/**
 * Each batch manifest by the SHA-256 it declares (the first read, of two that
 * declare one), built once per stream: whose batch a misplaced one holds.
 */
function batchOwners(entries: ReadonlyMap<number, Entry>): Map<string, Entry<BatchManifest>> {
  const owners = new Map<string, Entry<BatchManifest>>();
  for (const entry of entries.values()) {
    const { manifest } = entry;
    if (manifest.kind === 'batch' && !owners.has(manifest.batch.sha256)) {
      owners.set(manifest.batch.sha256, { ...entry, manifest });
    }
  }
  return owners;
}

/** Parses each manifest and binds it to its object key; a manifest that fails is left out of the chain. */
function readManifests(layout: StreamLayout, report: Report): Map<number, Entry> {
  const entries = new Map<number, Entry>();
  for (const [seq, { key, object }] of layout.manifests) {
    if (!object.bytes) {
      report('INVALID', layout.stream, key, 'missing-bytes', 'the manifest content was not fetched');
      continue;
    }
    // Refused before anything decodes it: a planted object at a manifest key is read by every verify, trusted keys or not.
    if (object.bytes.length > maxManifestBytes) {
      const message = `larger than ${maxManifestBytes} bytes: no manifest is`;
      report('INVALID', layout.stream, key, 'manifest-malformed', message);
      continue;
    }
    const manifest = parseManifest(object.bytes);
    if (!manifest.ok) {
      report('INVALID', layout.stream, key, 'manifest-malformed', manifest.error);
      continue;
    }
    const { value } = manifest;
    if (!isCanonical(object.bytes, value)) {
      const message =
        'not stored as the RFC 8785 canonical JSON of its content: other parsers may read it otherwise';
      report('INVALID', layout.stream, key, 'manifest-malformed', message);
      continue;
    }
    if (value.key !== key || manifestKey(layout.prefix, value.seq) !== key) {
      report('INVALID', layout.stream, key, 'key-mismatch', `the manifest was written for ${value.key}`);
      continue;
    }
    if (value.stream !== layout.stream) {
      report('INVALID', layout.stream, key, 'stream-mismatch', `the manifest names stream ${value.stream}`);
    }
    entries.set(seq, { key, manifest: value, sha256: sha256Hex(object.bytes) });
  }
  return entries;
}

/**
 * The sidecar stores exactly the canonical JSON it signed. Any other bytes
 * (a duplicate key, which JSON parsers resolve differently) could say one thing
 * to this verifier and another to an auditor's own.
 */
function isCanonical(bytes: Uint8Array, manifest: Manifest): boolean {
  return Buffer.compare(bytes, Buffer.from(canonicalJson(manifest), 'utf8')) === 0;
}

type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

function parseManifest(bytes: Uint8Array): Parsed<Manifest> {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    return { ok: false, error: 'not UTF-8 JSON' };
  }
  const result = manifestSchema.safeParse(json);
  if (result.success) return { ok: true, value: result.data };
  const fields = [...new Set(result.error.issues.map((issue) => issue.path.join('.') || '(manifest)'))];
  return { ok: false, error: `not a veil.manifest/v1 manifest: ${fields.join(', ')}` };
}

function missingGenesis(state: StreamState): void {
  const { stream, prefix } = state.layout;
  const message = 'no genesis manifest: the stream key is unknown, so no signature can be checked';
  state.report('INVALID', stream, manifestKey(prefix, 0), 'missing-genesis', message);
}

/** True when the genesis's key may be relied on: its thumbprint, trust and signature all hold. */
function checkGenesis(entry: Entry<GenesisManifest>, state: StreamState): boolean {
  const { stream } = state.layout;
  const { report, options } = state;
  const { manifest, key } = entry;
  const thumbprinted = jwkThumbprint(manifest.publicKey) === manifest.keyId;
  if (!thumbprinted) {
    report(
      'INVALID',
      stream,
      key,
      'key-id-mismatch',
      'keyId is not the thumbprint of the registered public key',
    );
  }
  const trusted = options.trustedKeys === undefined || checkTrust(options.trustedKeys, entry, state);
  const signed = verifyManifestSignature(manifest, manifest.publicKey);
  if (!signed) {
    report('INVALID', stream, key, 'signature-invalid', 'the genesis signature does not verify');
  }
  return thumbprinted && trusted && signed;
}

/** A key collected from one pod must not vouch for another pod's stream: each key is bound to the streams listed for it. */
function checkTrust(
  trusted: readonly TrustedKey[],
  entry: Entry<GenesisManifest>,
  state: StreamState,
): boolean {
  const { keyId } = entry.manifest;
  const { stream } = state.layout;
  const listed = trusted.filter((t) => t.keyId === keyId);
  if (listed.length === 0) {
    state.report('INVALID', stream, entry.key, 'untrusted-key', `key ${keyId} is not among the trusted keys`);
    return false;
  }
  if (!listed.some((t) => t.streams === undefined || globMatcher(t.streams)(stream))) {
    const message = `key ${keyId} is trusted for ${listed.map((t) => t.streams).join(', ')}, not for this stream`;
    state.report('INVALID', stream, entry.key, 'untrusted-key', message);
    return false;
  }
  return true;
}

/** Reports what is wrong with the manifest's link; true when it is signed by the stream's key. */
function checkLink(
  entry: Entry<LinkedManifest>,
  previous: Entry | undefined,
  genesis: Entry<GenesisManifest> | undefined,
  state: StreamState,
): boolean {
  const { stream } = state.layout;
  const { manifest, key } = entry;
  let signed = false;
  if (genesis) {
    if (manifest.keyId !== genesis.manifest.keyId) {
      state.report('INVALID', stream, key, 'unknown-key', `signed by ${manifest.keyId}, not the stream key`);
    } else if (!verifyManifestSignature(manifest, genesis.manifest.publicKey)) {
      state.report('INVALID', stream, key, 'signature-invalid', 'the signature does not verify');
    } else {
      signed = true;
    }
  }
  if (previous && (manifest.prev.key !== previous.key || manifest.prev.sha256 !== previous.sha256)) {
    const message = `prev does not match the stored bytes of ${previous.key}`;
    state.report('INVALID', stream, key, 'chain-break', message);
  }
  return signed;
}

/**
 * `signed`: the manifest is the stream key's, and the key is trusted; only then
 * are its batch's records read. A batch anyone could have written is reported
 * by its manifest's finding and never decoded: a few kilobytes of gzip can
 * inflate to millions of lines.
 */
function checkBatch(
  entry: Entry<BatchManifest>,
  owners: ReadonlyMap<string, Entry<BatchManifest>>,
  state: StreamState,
  signed: boolean,
): void {
  const { stream, prefix, batches } = state.layout;
  const { report } = state;
  const declared = entry.manifest.batch;
  const expectedKey = batchKey(prefix, entry.manifest.seq);
  if (declared.key !== expectedKey) {
    report(
      'INVALID',
      stream,
      entry.key,
      'key-mismatch',
      `describes ${declared.key} instead of ${expectedKey}`,
    );
    return;
  }
  const object = batches.get(entry.manifest.seq)?.object;
  if (!object) {
    report('INVALID', stream, declared.key, 'missing-batch', `described by ${entry.key} but absent`);
    return;
  }
  if (!object.bytes) {
    report('INVALID', stream, declared.key, 'missing-bytes', 'the batch content was not fetched');
    return;
  }
  const sha256 = sha256Hex(object.bytes);
  if (sha256 !== declared.sha256) {
    const owner = owners.get(sha256);
    if (owner) {
      report(
        'INVALID',
        stream,
        declared.key,
        'batch-misplaced',
        `holds the batch of ${owner.manifest.batch.key}`,
      );
    } else {
      report('INVALID', stream, declared.key, 'batch-checksum-mismatch', `SHA-256 differs from ${entry.key}`);
    }
    return;
  }
  if (!signed) return;
  const inflated = inflateBatch(object.bytes);
  if (!inflated.ok) {
    report('INVALID', stream, declared.key, 'batch-malformed', inflated.error);
    return;
  }
  checkRecords(declared.key, entry.manifest, inflated.text, state);
}

/** How many lines of a batch showed one problem, and the first few of them. */
type LineProblems = { count: number; shown: string[] };
type LeveledProblems = LineProblems & { level: FindingLevel };

/** Lines named in a finding about many: enough to find them, few enough to keep a finding one line. */
const shownLines = 5;

function countProblem(problems: LineProblems, problem: string): void {
  problems.count += 1;
  if (problems.shown.length < shownLines) problems.shown.push(problem);
}

/**
 * One finding per code for a batch's lines, however many lines share it: a
 * million bad lines are one finding that counts them, not a million findings.
 */
class LineFindings {
  readonly #problems = new Map<FindingCode, LeveledProblems>();

  /** `problem`: all that is wrong with one line, under `code`. */
  add(code: FindingCode, problem: string, level: FindingLevel = 'INVALID'): void {
    const problems = this.#problems.get(code) ?? { level, count: 0, shown: [] };
    countProblem(problems, problem);
    this.#problems.set(code, problems);
  }

  report(key: string, state: StreamState): void {
    for (const [code, { level, count, shown }] of this.#problems) {
      const more = count > shown.length ? '; …' : '';
      const message = count === 1 ? `${shown[0]}` : `${count} lines: ${shown.join('; ')}${more}`;
      state.report(level, state.layout.stream, key, code, message);
    }
  }
}

/** What the lines of a batch add up to, checked against its manifest once all are read. */
type BatchTally = {
  tree: MerkleTree;
  findings: LineFindings;
  /** Records of this stream and pod, first seen here: counted once the Merkle root is known to match. */
  candidates: AuditRecord[];
  /** Lines whose seq is not the one their place in the batch gives. */
  misplaced: LineProblems;
  firstTime?: string;
  lastTime?: string;
};

/**
 * Checks each record of a signed batch against its manifest, reading at most
 * one line more than the manifest declares. Only records the stream's key
 * vouches for (its signed Merkle root matches them) and of this stream become
 * the result's records, which the populations and totals are drawn from: a
 * forged batch is reported, never counted.
 */
function checkRecords(key: string, manifest: BatchManifest, text: Buffer, state: StreamState): void {
  const { report } = state;
  const declared = manifest.batch;
  const tally: BatchTally = {
    tree: new MerkleTree(),
    findings: new LineFindings(),
    candidates: [],
    misplaced: { count: 0, shown: [] },
  };
  const read = forEachLine(
    text,
    (bytes, index) => checkLine(key, decodeLine(bytes), index, declared, tally, state),
    declared.records + 1,
  );
  const rooted = tally.tree.rootHex() === declared.merkleRoot;
  if (!rooted) {
    report(
      'INVALID',
      state.layout.stream,
      key,
      'merkle-mismatch',
      `the Merkle root differs from ${manifest.key}`,
    );
  }
  tally.findings.report(key, state);
  if (rooted) {
    for (const record of tally.candidates) {
      state.records.push(record);
      state.keys.set(record, key);
    }
  }
  const problems: string[] = [];
  if (read.more) problems.push(`more than ${read.lines} lines for ${declared.records} records`);
  else if (read.lines !== declared.records)
    problems.push(`${read.lines} lines for ${declared.records} records`);
  if (declared.lastSeq - declared.firstSeq + 1 !== declared.records) {
    problems.push(`seq ${declared.firstSeq}..${declared.lastSeq} for ${declared.records} records`);
  }
  const { misplaced } = tally;
  problems.push(...misplaced.shown);
  if (misplaced.count > misplaced.shown.length)
    problems.push(`${misplaced.count - misplaced.shown.length} more such lines`);
  const { firstTime, lastTime } = tally;
  if (firstTime !== undefined && (firstTime !== declared.firstTime || lastTime !== declared.lastTime)) {
    problems.push(`record times ${firstTime}..${lastTime}, not ${declared.firstTime}..${declared.lastTime}`);
  }
  if (problems.length > 0) {
    report(
      'INVALID',
      state.layout.stream,
      key,
      'batch-range-mismatch',
      `the records differ from ${manifest.key}: ${problems.join('; ')}`,
    );
  }
}

/** Checks one line of a batch; nothing of a bad line is kept but its place in a finding. */
function checkLine(
  key: string,
  line: DecodedLine,
  index: number,
  declared: BatchManifest['batch'],
  tally: BatchTally,
  state: StreamState,
): void {
  const { stream } = state.layout;
  tally.tree.add(line.bytes);
  if (!line.ok) {
    tally.findings.add('record-malformed', `line ${index + 1}: ${line.error}`);
    return;
  }
  const { record } = line;
  const approvalProblems = approvalRecordProblems(record);
  if (approvalProblems.length > 0) {
    // One entry per line, however many problems it has: the finding counts lines.
    const problem = `line ${index + 1} (seq ${record.seq}): ${approvalProblems.join(' and ')}`;
    tally.findings.add('record-malformed', problem);
  }
  const ownStream = record.stream === stream;
  if (!ownStream)
    tally.findings.add('stream-mismatch', `line ${index + 1} (seq ${record.seq}) is of another stream`);
  const ownPod = isStreamPod(record, stream);
  if (!ownPod) {
    const problem = `line ${index + 1} (seq ${record.seq}) names pod ${record.pod.namespace}/${record.pod.uid}, not the stream's`;
    tally.findings.add('pod-mismatch', problem);
  }
  if (record.seq !== declared.firstSeq + index) {
    countProblem(
      tally.misplaced,
      `line ${index + 1} has seq ${record.seq}, not ${declared.firstSeq + index}`,
    );
  }
  tally.firstTime = tally.firstTime === undefined ? record.time : earliest(tally.firstTime, record.time);
  tally.lastTime = tally.lastTime === undefined ? record.time : latest(tally.lastTime, record.time);
  if (noteSeq(record.seq, line.bytes, index, tally, state) && ownStream && ownPod) {
    tally.candidates.push(record);
  }
}

/**
 * A sidecar names its stream after its own pod, so a record naming another pod
 * is one key holder writing in another pod's name: its stream key vouches for
 * its own pod only.
 */
function isStreamPod(record: AuditRecord, stream: string): boolean {
  const ref = parseStreamId(stream);
  return ref !== undefined && record.pod.namespace === ref.namespace && record.pod.uid === ref.podUid;
}

/** What keeps an approval's own record from being read as one. */
function approvalRecordProblems(record: AuditRecord): string[] {
  if (record.kind === 'request') return [];
  const problems: string[] = [];
  // An approval's trail is read by its id: a record of it that names none says nothing.
  if (record.approval === undefined) problems.push(`an ${record.kind} record names no approval`);
  // Written while the request is held, it answered nobody: a status would claim an answer.
  if (record.status !== null) problems.push(`an ${record.kind} record carries status ${record.status}`);
  return problems;
}

/**
 * Pairs the two parts of forwarded requests across the stream's batches: a
 * completion must name an earlier incomplete request of its stream, and a first
 * part nothing completes is a request whose outcome a crash lost. Returns the
 * requests counted once each, and those left incomplete.
 */
function checkCompletions(state: StreamState): { count: number; incomplete: number } {
  const { stream } = state.layout;
  const keyOf = (record: AuditRecord) => state.keys.get(record) ?? state.layout.prefix;
  const { completedBy, mismatched } = matchCompletions(state.records);
  // One finding per batch, as for its other lines: one bad completion repeated down a batch is not a finding a line.
  const byBatch = new Map<string, LineFindings>();
  for (const { record, reason } of mismatched) {
    const key = keyOf(record);
    const findings = byBatch.get(key) ?? new LineFindings();
    findings.add('completion-mismatch', `seq ${record.seq} completes ${record.completes}: ${reason}`);
    byBatch.set(key, findings);
  }
  for (const [key, findings] of byBatch) findings.report(key, state);
  const incomplete = new Map<string, number[]>();
  let count = 0;
  for (const record of state.records) {
    if (record.kind !== 'request' || completedBy.has(record)) continue;
    count += 1;
    if (record.outcome !== 'incomplete') continue;
    const key = keyOf(record);
    const seqs = incomplete.get(key);
    if (seqs) seqs.push(record.seq);
    else incomplete.set(key, [record.seq]);
  }
  for (const [key, seqs] of incomplete) {
    const shown = seqs.slice(0, 10).join(', ') + (seqs.length > 10 ? ', …' : '');
    const message = `${seqs.length} incomplete record(s): a crash before the outcome (seq ${shown})`;
    state.report('WARN', stream, key, 'incomplete-record', message);
  }
  return { count, incomplete: sum([...incomplete.values()], (seqs) => seqs.length) };
}

/** False for a seq already seen: a duplicate is reported with its batch's lines, not counted twice. */
function noteSeq(
  seq: number,
  bytes: Uint8Array,
  index: number,
  tally: BatchTally,
  state: StreamState,
): boolean {
  const earlier = state.seen.get(seq);
  if (!earlier) {
    // A copy: the line is a view of its whole inflated batch, which must not outlive its reading.
    state.seen.set(seq, new Uint8Array(bytes));
    return true;
  }
  const line = `line ${index + 1}`;
  if (Buffer.compare(earlier, bytes) === 0) {
    tally.findings.add('duplicate-record', `${line}: seq ${seq} shipped twice, identical`, 'WARN');
  } else {
    tally.findings.add('seq-conflict', `${line}: seq ${seq} appears twice with different content`);
  }
  return false;
}

/** Record seqs run 0, 1, 2 … across the batches in chain order; returns the number of gaps. */
function checkContinuity(batches: readonly Entry<BatchManifest>[], state: StreamState): number {
  let expected = 0;
  let gaps = 0;
  for (const { manifest } of batches) {
    const { firstSeq, lastSeq, key } = manifest.batch;
    if (firstSeq > expected) {
      const missing = firstSeq - 1 === expected ? `${expected}` : `${expected}..${firstSeq - 1}`;
      state.report(
        'INVALID',
        state.layout.stream,
        key,
        'seq-gap',
        `records ${missing} are missing before this batch`,
      );
      gaps += 1;
    }
    expected = Math.max(expected, lastSeq + 1);
  }
  return gaps;
}

function checkClose(
  close: Entry<CloseManifest> | undefined,
  batches: readonly Entry<BatchManifest>[],
  state: StreamState,
): void {
  const { stream, prefix } = state.layout;
  if (!close) {
    state.report(
      'WARN',
      stream,
      prefix,
      'unclosed-stream',
      'no closing manifest: the sidecar did not shut down cleanly, or still runs',
    );
    return;
  }
  const lastSeq = highestSeq(batches);
  if (close.manifest.lastSeq !== lastSeq) {
    const message = `closes at seq ${close.manifest.lastSeq}, but the batches end at ${lastSeq}`;
    state.report('INVALID', stream, close.key, 'close-mismatch', message);
  }
}

/** The last record seq the batches declare: the highest, whatever order the chain holds them in. */
function highestSeq(batches: readonly Entry<BatchManifest>[]): number | null {
  return batches.reduce<number | null>((max, b) => Math.max(max ?? -1, b.manifest.batch.lastSeq), null);
}

/** A batch no manifest describes. Past the last manifest of an unclosed stream it is a crash between two uploads. */
function checkOrphans(
  entries: ReadonlyMap<number, Entry>,
  close: Entry | undefined,
  lastManifestSeq: number,
  state: StreamState,
): void {
  for (const [seq, { key }] of state.layout.batches) {
    if (entries.get(seq)?.manifest.kind === 'batch') continue;
    if (!close && seq > lastManifestSeq) {
      state.report(
        'WARN',
        state.layout.stream,
        key,
        'orphan-object',
        'a batch without its manifest: an upload cut short',
      );
    } else {
      state.report('INVALID', state.layout.stream, key, 'orphan-object', 'a batch no manifest describes');
    }
  }
}

// ---- helpers ----------------------------------------------------------------

function groupBy<T>(items: readonly T[], keyOf: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const key = keyOf(item);
    const group = groups.get(key);
    if (group) group.push(item);
    else groups.set(key, [item]);
  }
  return groups;
}

function sum<T>(items: readonly T[], value: (item: T) => number): number {
  return items.reduce((total, item) => total + value(item), 0);
}

// RFC 3339 UTC timestamps of one precision sort as strings.
function earliest(a: string, b: string): string {
  return a <= b ? a : b;
}

function latest(a: string, b: string): string {
  return a >= b ? a : b;
}
