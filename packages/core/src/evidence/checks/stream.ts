// One stream's manifest chain: the genesis registers the stream key, every
// later manifest links to the one before and is signed by that key, and a batch
// is read only when the chain vouches for it.

import { globMatcher } from '../../policy/glob.ts';
import { inflateBatch } from '../batch.ts';
import { sha256Hex } from '../hash.ts';
import { jwkThumbprint } from '../keys.ts';
import {
  type BatchManifest,
  batchKey,
  type CloseManifest,
  type GenesisManifest,
  manifestKey,
} from '../manifest.ts';
import type { AuditRecord } from '../record.ts';
import { verifyManifestSignature } from '../signing.ts';
import type { Report } from './findings.ts';
import type { TrustedKey, VerifyOptions } from './inputs.ts';
import type { StreamLayout } from './layout.ts';
import { readManifests } from './manifests.ts';
import { checkCompletions, checkRecords } from './records.ts';
import type { Entry, StreamState } from './stream-state.ts';
import { earliest, latest } from './timestamps.ts';

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

/** The manifests that link to the one before. */
type LinkedManifest = BatchManifest | CloseManifest;

export type StreamResult = { summary: StreamSummary; records: AuditRecord[]; requests: number; gaps: number };

export function verifyStream(layout: StreamLayout, options: VerifyOptions, report: Report): StreamResult {
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
      'no closing manifest: the sidecar stopped before writing one (a crash, a lost node, or the store unreachable at shutdown), or it still runs',
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
