import assert from 'node:assert/strict';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { type BatchContent, encodeBatch } from '../../src/evidence/batch.ts';
import { sha256Base64, sha256Hex } from '../../src/evidence/hash.ts';
import { generateSigningKey } from '../../src/evidence/keys.ts';
import {
  batchKey,
  linkTo,
  manifestKey,
  maxManifestBytes,
  storeManifest,
} from '../../src/evidence/manifest.ts';
import { merkleRootHex } from '../../src/evidence/merkle.ts';
import { encodeRecordLine } from '../../src/evidence/record.ts';
import { signManifest } from '../../src/evidence/signing.ts';
import {
  type Finding,
  formatFinding,
  type StoredObject,
  summaryLine,
  type VerifyOptions,
  verifyEvidence,
} from '../../src/evidence/verify.ts';
import { buildStream, now, objectAt, options, record, ref, replaceAt, stored } from './fixtures.ts';

const clean = [
  [0, 1, 2],
  [3, 4],
  [5, 6, 7, 8],
];

function codes(objects: readonly StoredObject[], opts: VerifyOptions = options): string[] {
  return verifyEvidence(objects, opts).findings.map((f) => `${f.level} ${f.code}`);
}

function flip(bytes: Uint8Array, at: number): Uint8Array {
  const copy = Uint8Array.from(bytes);
  copy[at] = (copy[at] ?? 0) ^ 0x01;
  return copy;
}

test('a clean stream verifies with no finding', () => {
  const built = buildStream({ batches: clean });
  const result = verifyEvidence(built.objects, options);
  assert.deepEqual(result.findings, []);
  assert.deepEqual(result.totals, {
    streams: 1,
    batches: 3,
    records: 9,
    requests: 9,
    gaps: 0,
    incomplete: 0,
  });
  assert.deepEqual(
    result.records.map((r) => r.seq),
    [0, 1, 2, 3, 4, 5, 6, 7, 8],
  );
  const [summary] = result.streams;
  assert.equal(summary?.stream, built.stream);
  assert.equal(summary?.keyId, built.key.keyId);
  assert.equal(summary?.closed, true);
  assert.equal(summary?.valid, true);
  assert.equal(summary?.manifests, 5);
  assert.deepEqual([summary?.firstSeq, summary?.lastSeq], [0, 8]);
  assert.equal(summaryLine(result.totals), '1 streams, 3 batches, 9 records verified, 0 gaps');
});

test('the listing order of objects does not matter', () => {
  const built = buildStream({ batches: clean });
  assert.deepEqual(verifyEvidence([...built.objects].reverse(), options).findings, []);
});

test('a stream of more records than a call takes arguments verifies whole', () => {
  const count = 160_000;
  const batchOf = 20_000;
  const batches = Array.from({ length: count / batchOf }, (_, b) =>
    Array.from({ length: batchOf }, (_, i) => b * batchOf + i),
  );
  const result = verifyEvidence(buildStream({ batches }).objects, options);
  assert.deepEqual(
    result.findings.filter((f) => f.level === 'INVALID'),
    [],
  );
  assert.equal(result.totals.records, count);
  assert.equal(result.records.length, count);
  assert.equal(result.records.at(-1)?.seq, count - 1);
});

// ---- the tamper corpus: each case is caught by its own finding code -------------

test('a flipped byte in a batch breaks its checksum', () => {
  const built = buildStream({ batches: clean });
  const key = batchKey(built.prefix, 2);
  const original = objectAt(built.objects, key);
  const objects = built.objects.map((o) =>
    o.key === key ? { ...o, bytes: flip(original.bytes as Uint8Array, 20) } : o,
  );
  // The stored S3 checksum no longer matches either.
  assert.deepEqual(codes(objects), ['INVALID checksum-mismatch', 'INVALID batch-checksum-mismatch']);
});

test('a batch written again as a new version is flagged; the original is what gets verified', () => {
  const built = buildStream({ batches: clean });
  const key = batchKey(built.prefix, 1);
  const forged = encodeBatch(built.lines.get(2) ?? []).bytes;
  const replacement = { ...stored(key, forged, 99), versionId: 'v-new' };
  // Listed newest first, as S3 lists versions.
  const objects = [replacement, ...built.objects.map((o) => (o.key === key ? { ...o, isLatest: false } : o))];
  assert.deepEqual(codes(objects), ['INVALID replaced-object']);
  assert.equal(verifyEvidence(objects, options).totals.records, 9);
});

test('a batch written again within the same second is told from the original by which is latest', () => {
  const built = buildStream({ batches: clean });
  const key = batchKey(built.prefix, 1);
  const original = objectAt(built.objects, key);
  const forged = encodeBatch(built.lines.get(2) ?? []).bytes;
  // S3 keeps Last-Modified to the second: both versions read the same time.
  const replacement = {
    ...original,
    bytes: forged,
    checksumSha256: sha256Base64(forged),
    versionId: 'v-new',
  };
  const objects = [replacement, ...built.objects.map((o) => (o.key === key ? { ...o, isLatest: false } : o))];
  assert.deepEqual(codes(objects), ['INVALID replaced-object']);
  assert.equal(verifyEvidence(objects, options).totals.records, 9);
});

test('a key written again with the same bytes is a warning, not a replacement', () => {
  const built = buildStream({ batches: clean });
  const key = manifestKey(built.prefix, 2);
  const original = objectAt(built.objects, key);
  const again = { ...stored(key, Uint8Array.from(original.bytes as Uint8Array), 99), versionId: 'v-again' };
  const objects = [again, ...built.objects.map((o) => (o.key === key ? { ...o, isLatest: false } : o))];
  assert.deepEqual(codes(objects), ['WARN rewritten-object']);
  assert.equal(verifyEvidence(objects, options).totals.records, 9);
});

test('a manifest hidden behind a delete marker is flagged', () => {
  const built = buildStream({ batches: clean });
  const key = manifestKey(built.prefix, 2);
  const marker: StoredObject = {
    key,
    versionId: 'dm',
    isLatest: true,
    isDeleteMarker: true,
    lastModified: now,
  };
  const objects = [...built.objects.map((o) => (o.key === key ? { ...o, isLatest: false } : o)), marker];
  assert.deepEqual(codes(objects), ['INVALID hidden-object']);
});

test('a manifest copied to another key fails its key binding', () => {
  const built = buildStream({ batches: clean });
  const copy = objectAt(built.objects, manifestKey(built.prefix, 1));
  const objects = [...built.objects, { ...copy, key: manifestKey(built.prefix, 9) }];
  const result = verifyEvidence(objects, options);
  assert.deepEqual(
    result.findings.map((f) => [f.code, f.key]),
    [['key-mismatch', manifestKey(built.prefix, 9)]],
  );
});

test('two batches swapped are each found holding the other', () => {
  const built = buildStream({ batches: clean });
  const first = batchKey(built.prefix, 1);
  const second = batchKey(built.prefix, 2);
  const a = objectAt(built.objects, first).bytes as Uint8Array;
  const b = objectAt(built.objects, second).bytes as Uint8Array;
  const objects = replaceAt(replaceAt(built.objects, first, b), second, a);
  const findings = verifyEvidence(objects, options).findings;
  assert.deepEqual(
    findings.map((f) => [f.code, f.key]),
    [
      ['batch-misplaced', first],
      ['batch-misplaced', second],
    ],
  );
  assert.match(findings[0]?.message ?? '', /00000000000000000002\.ndjson\.gz/);
});

test('a stream without its closing manifest is reported unclosed', () => {
  const built = buildStream({ batches: clean, close: false });
  assert.deepEqual(codes(built.objects), ['WARN unclosed-stream']);
  // A sidecar that shut down cleanly with the store away leaves no close either: not blamed on the sidecar.
  const [finding] = verifyEvidence(built.objects, options).findings;
  assert.match(finding?.message ?? '', /the store unreachable at shutdown/);
  assert.doesNotMatch(finding?.message ?? '', /did not shut down cleanly/);
});

test('a batch no manifest describes is an orphan', () => {
  const built = buildStream({ batches: clean });
  const extra = stored(batchKey(built.prefix, 9), encodeBatch(built.lines.get(1) ?? []).bytes, 50);
  assert.deepEqual(codes([...built.objects, extra]), ['INVALID orphan-object']);
});

test('a batch past the last manifest of an unclosed stream is an upload cut short', () => {
  const built = buildStream({ batches: clean, close: false });
  const extra = stored(batchKey(built.prefix, 4), encodeBatch(built.lines.get(1) ?? []).bytes, 50);
  assert.deepEqual(codes([...built.objects, extra]), ['WARN unclosed-stream', 'WARN orphan-object']);
});

test('an object outside the layout is foreign', () => {
  const built = buildStream({ batches: clean });
  const extra = stored('notes/readme.txt', Buffer.from('hello'), 50);
  assert.deepEqual(codes([...built.objects, extra]), ['WARN foreign-object']);
});

test('versions of a foreign object pulled without their bytes are told apart by their stored SHA-256', () => {
  const built = buildStream({ batches: clean });
  const version = (text: string, index: number): StoredObject => {
    const { bytes: _left, ...meta } = stored('notes/readme.txt', Buffer.from(text), index);
    return { ...meta, isLatest: false };
  };
  const again = [version('hello', 50), { ...version('hello', 51), isLatest: true }];
  assert.deepEqual(codes([...built.objects, ...again]), ['WARN rewritten-object', 'WARN foreign-object']);
  const other = [version('hello', 50), { ...version('bye', 51), isLatest: true }];
  assert.deepEqual(codes([...built.objects, ...other]), ['INVALID replaced-object', 'WARN foreign-object']);
  // Uploaded without a checksum (or as a multipart composite): nothing tells the versions apart or alike.
  const unchecked = again.map(({ checksumSha256: _none, ...meta }) => meta);
  const result = verifyEvidence([...built.objects, ...unchecked], options);
  assert.deepEqual(
    result.findings
      .filter((f) => f.code !== 'checksum-missing')
      .map((f) => `${f.level} ${f.code} ${f.message}`),
    [
      'WARN versions-not-compared 2 versions that cannot be compared: their bytes were not fetched and the store kept no SHA-256 of them',
      'WARN foreign-object not an object of the evidence layout',
    ],
  );
});

test('a record removed with the Merkle root recomputed but not re-signed fails the signature', () => {
  const built = buildStream({ batches: clean });
  const lines = built.lines.get(3) ?? [];
  const shorter = encodeBatch(lines.slice(0, -1));
  const stored3 = built.manifests[3];
  assert.ok(stored3 && stored3.manifest.kind === 'batch');
  const forged = storeManifest({
    ...stored3.manifest,
    batch: { ...stored3.manifest.batch, ...shorter.content },
  });
  let objects = replaceAt(built.objects, stored3.manifest.batch.key, shorter.bytes);
  objects = replaceAt(objects, stored3.key, forged.bytes);
  const found = codes(objects);
  assert.ok(found.includes('INVALID signature-invalid'), found.join());
  // The close manifest still links the original bytes, and still ends at seq 8.
  assert.ok(found.includes('INVALID chain-break'), found.join());
  assert.ok(found.includes('INVALID close-mismatch'), found.join());
});

test('a gap in the record sequence is reported with the missing seqs', () => {
  const built = buildStream({
    batches: [
      [0, 1, 2],
      [5, 6],
    ],
  });
  const result = verifyEvidence(built.objects, options);
  assert.deepEqual(
    result.findings.map((f) => `${f.code}: ${f.message}`),
    ['seq-gap: records 3..4 are missing before this batch'],
  );
  assert.equal(result.totals.gaps, 1);
});

test('a manifest signed by a key other than the stream key is unknown', () => {
  const intruder = generateSigningKey();
  const built = buildStream({ batches: clean, signer: (seq, own) => (seq === 2 ? intruder : own) });
  const result = verifyEvidence(built.objects, options);
  assert.deepEqual(
    result.findings.map((f) => [f.code, f.key]),
    [['unknown-key', manifestKey(built.prefix, 2)]],
  );
  // Its batch's records are reported, never counted: the populations are drawn from verified records.
  assert.deepEqual(
    result.records.map((r) => r.seq),
    [0, 1, 2, 5, 6, 7, 8],
  );
  assert.equal(result.totals.records, 7);
});

// ---- further checks -------------------------------------------------------------

test('a genesis key outside the trusted keys is refused', () => {
  const built = buildStream({ batches: clean });
  assert.deepEqual(codes(built.objects, { ...options, trustedKeys: [{ keyId: built.key.keyId }] }), []);
  assert.deepEqual(codes(built.objects, { ...options, trustedKeys: [{ keyId: 'someone-else' }] }), [
    'INVALID untrusted-key',
  ]);
});

test('a trusted key signs only the streams listed for it', () => {
  const built = buildStream({ batches: clean });
  const keyId = built.key.keyId;
  const own = { keyId, streams: `prod-eu/ml/${ref.podUid}/*` };
  const elsewhere = { keyId, streams: 'prod-eu/payments/*' };
  assert.deepEqual(codes(built.objects, { ...options, trustedKeys: [own] }), []);
  assert.deepEqual(codes(built.objects, { ...options, trustedKeys: [elsewhere, own] }), []);
  // One pod's key signing a genesis under another pod's path.
  const result = verifyEvidence(built.objects, { ...options, trustedKeys: [elsewhere] });
  assert.deepEqual(
    result.findings.map((f) => [f.code, f.message]),
    [['untrusted-key', `key ${keyId} is trusted for prod-eu/payments/*, not for this stream`]],
  );
});

test('a manifest stored in other bytes than its canonical JSON is refused, though its signature verifies', () => {
  const built = buildStream({ batches: clean });
  const close = built.manifests.at(-1);
  assert.ok(close?.manifest.kind === 'close');
  // A duplicate key: this parser takes the last value, which was signed; another may take the first.
  const text = Buffer.from(close.bytes).toString('utf8');
  const doubled = `{"lastSeq":0,${text.slice(1)}`;
  assert.equal(JSON.parse(doubled).lastSeq, close.manifest.lastSeq);
  assert.deepEqual(codes(replaceAt(built.objects, close.key, Buffer.from(doubled))), [
    'INVALID manifest-malformed',
    'WARN unclosed-stream',
  ]);
});

test('without its genesis a stream cannot be checked', () => {
  const built = buildStream({ batches: clean });
  const objects = built.objects.filter((o) => o.key !== manifestKey(built.prefix, 0));
  assert.deepEqual(codes(objects), ['INVALID missing-genesis']);
});

test('a genesis whose key id is not its key thumbprint is caught', () => {
  const built = buildStream({ batches: clean });
  const genesis = built.manifests[0];
  assert.ok(genesis && genesis.manifest.kind === 'genesis');
  const unsigned = { ...genesis.manifest, publicKey: generateSigningKey().publicJwk };
  const forged = storeManifest({ ...unsigned, signature: signManifest(unsigned, built.key) });
  const found = codes(replaceAt(built.objects, genesis.key, forged.bytes));
  assert.ok(found.includes('INVALID key-id-mismatch'), found.join());
});

test('records of a stream whose genesis fails its checks are reported, never counted', () => {
  const trustedKey = generateSigningKey();
  // A key claiming a trusted key's id: every manifest verifies against the genesis's own public key.
  const impostor = buildStream({ batches: clean }, { ...generateSigningKey(), keyId: trustedKey.keyId });
  const foreign = buildStream({ batches: clean });
  const unsigned = buildStream({ batches: clean });
  const genesis = unsigned.manifests[0];
  assert.ok(genesis);
  const cases = [
    { objects: impostor.objects, trustedKeys: [{ keyId: trustedKey.keyId }], code: 'key-id-mismatch' },
    { objects: foreign.objects, trustedKeys: [{ keyId: trustedKey.keyId }], code: 'untrusted-key' },
    {
      objects: replaceAt(
        unsigned.objects,
        genesis.key,
        storeManifest({ ...genesis.manifest, signature: 'A'.repeat(86) }).bytes,
      ),
      trustedKeys: [{ keyId: unsigned.key.keyId }],
      // Its stored bytes changed, so the next manifest's link no longer matches them either.
      code: 'signature-invalid',
      also: ['INVALID chain-break'],
    },
  ];
  for (const { objects, trustedKeys, code, also = [] } of cases) {
    const result = verifyEvidence(objects, { ...options, trustedKeys });
    assert.deepEqual(
      result.findings.map((f) => `${f.level} ${f.code}`),
      [`INVALID ${code}`, ...also],
    );
    assert.deepEqual([result.records, result.totals.records, result.totals.requests], [[], 0, 0], code);
    assert.equal(result.streams[0]?.records, 0, code);
  }
});

test('a batch its manifest describes but the bucket lacks is missing', () => {
  const built = buildStream({ batches: clean });
  const gone = batchKey(built.prefix, 2);
  const findings = verifyEvidence(
    built.objects.filter((o) => o.key !== gone),
    options,
  ).findings;
  assert.deepEqual(
    findings.map((f) => [f.code, f.key]),
    [['missing-batch', gone]],
  );
});

test('a manifest missing from the middle of the chain breaks it', () => {
  const built = buildStream({ batches: clean });
  const missing = manifestKey(built.prefix, 2);
  const findings = verifyEvidence(
    built.objects.filter((o) => o.key !== missing),
    options,
  ).findings;
  assert.deepEqual(
    findings.map((f) => [f.code, f.key]),
    [
      ['chain-break', missing],
      ['seq-gap', batchKey(built.prefix, 3)],
      ['orphan-object', batchKey(built.prefix, 2)],
    ],
  );
});

test('an object at a manifest key larger than any manifest is refused unread, trusted keys or not', () => {
  const built = buildStream({ batches: clean });
  // Parsed, millions of brackets exhaust the heap: the size alone refuses it.
  const nested = Buffer.from(`${'['.repeat(maxManifestBytes / 2)}${']'.repeat(maxManifestBytes / 2)}0`);
  const planted = stored(manifestKey(built.prefix, 9), nested, 50);
  const trusted = { ...options, trustedKeys: [{ keyId: built.key.keyId }] };
  const findings = verifyEvidence([...built.objects, planted], trusted).findings;
  assert.deepEqual(
    findings.map((f) => `${f.level} ${f.code} ${f.key}: ${f.message}`),
    [`INVALID manifest-malformed ${planted.key}: larger than ${maxManifestBytes} bytes: no manifest is`],
  );
});

test('a manifest planted far past the chain costs one finding for the manifests it skips', () => {
  const built = buildStream({ batches: clean });
  const batch = built.manifests[1]?.manifest;
  assert.ok(batch?.kind === 'batch');
  // A walk over every seq up to the plant fails at the first, rather than running for ever at the second.
  for (const seq of [100_000, Number.MAX_SAFE_INTEGER]) {
    const key = manifestKey(built.prefix, seq);
    const planted = storeManifest({
      ...batch,
      seq,
      key,
      batch: { ...batch.batch, key: batchKey(built.prefix, seq) },
    });
    const result = verifyEvidence([...built.objects, stored(key, planted.bytes, 99)], options);
    const breaks = result.findings.filter((f) => f.code === 'chain-break');
    assert.equal(breaks.length, 1);
    assert.deepEqual(
      breaks.map((f) => [f.key, f.message]),
      [[manifestKey(built.prefix, 5), `manifests 5..${seq - 1} are missing`]],
    );
    assert.equal(result.totals.gaps, 1);
    assert.equal(result.totals.records, 9);
  }
});

test('a signed Merkle root that does not match the records is caught', () => {
  const built = buildStream({
    batches: clean,
    editBatch: (seq, batch) =>
      seq === 2 ? { ...batch, content: { ...batch.content, merkleRoot: '0'.repeat(64) } } : batch,
  });
  assert.deepEqual(codes(built.objects), ['INVALID merkle-mismatch']);
  assert.deepEqual(
    verifyEvidence(built.objects, options).records.map((r) => r.seq),
    [0, 1, 2, 5, 6, 7, 8],
  );
});

test('a signed record range that does not match the records is caught', () => {
  const built = buildStream({
    batches: clean,
    editBatch: (seq, batch) =>
      seq === 1 ? { ...batch, content: { ...batch.content, records: 4, lastSeq: 3 } } : batch,
  });
  const found = codes(built.objects);
  assert.ok(found.includes('INVALID batch-range-mismatch'), found.join());
});

test('records of another stream inside a batch are caught', () => {
  const built = buildStream({
    batches: clean,
    recordFor: (stream, seq) => record(seq === 3 || seq === 4 ? `${stream}x` : stream, seq),
    // A shipper that did not look: the manifest claims the batch for this stream.
    editBatch: (_seq, batch) => ({ ...batch, stream: batch.stream.replace(/x$/, '') }),
  });
  // One finding for the batch, however many of its lines are another stream's.
  assert.deepEqual(
    verifyEvidence(built.objects, options).findings.map((f) => `${f.level} ${f.code} ${f.key}: ${f.message}`),
    [
      `INVALID stream-mismatch ${batchKey(built.prefix, 2)}: 2 lines: line 1 (seq 3) is of another stream; line 2 (seq 4) is of another stream`,
    ],
  );
});

test('records naming another pod than their stream are reported and not counted', () => {
  const other = { namespace: 'payments', name: 'api-0', uid: '0b7e1c2d-9f3a-4e5b-8c6d-1a2b3c4d5e6f' };
  const sameUid = { namespace: 'payments', name: 'embedder-0', uid: ref.podUid };
  const built = buildStream({
    batches: clean,
    // A pod's own key writing, in its own stream, records credited to someone else's pod.
    recordFor: (stream, seq) => ({
      ...record(stream, seq),
      ...(seq === 3 ? { pod: other } : seq === 6 ? { pod: sameUid } : {}),
    }),
  });
  const result = verifyEvidence(built.objects, options);
  assert.deepEqual(
    result.findings.map((f) => `${f.level} ${f.code}`),
    ['INVALID pod-mismatch', 'INVALID pod-mismatch'],
  );
  assert.deepEqual(
    result.records.map((r) => r.seq),
    [0, 1, 2, 4, 5, 7, 8],
  );
});

test('incomplete records are counted and warned about', () => {
  const built = buildStream({
    batches: clean,
    recordFor: (stream, seq) => ({
      ...record(stream, seq),
      ...(seq % 4 === 1 ? { outcome: 'incomplete', status: null } : {}),
    }),
  });
  const result = verifyEvidence(built.objects, options);
  assert.deepEqual(
    result.findings.map((f) => `${f.level} ${f.code}`),
    ['WARN incomplete-record', 'WARN incomplete-record'],
  );
  assert.equal(result.totals.incomplete, 2);
  assert.equal(summaryLine(result.totals), '1 streams, 3 batches, 9 records verified, 0 gaps, 2 incomplete');
});

/** A fixed ULID per seq, so a record can name an earlier one. */
const idOf = (seq: number) => `01HZZZZZZZZZZZZZZZZZZZZ${String(seq).padStart(3, '0')}`;

/** The record at `seq`: plain, a first part (`part`), or the completion of the part at the seq given. */
function split(stream: string, seq: number, parts: Record<number, number | 'part'>) {
  const base = { ...record(stream, seq), id: idOf(seq) };
  const role = parts[seq];
  if (role === 'part') {
    const { vectors: _vectors, ...known } = base;
    return { ...known, outcome: 'incomplete' as const, status: null };
  }
  return role === undefined ? base : { ...base, completes: idOf(role) };
}

test('a first part completed later, across batches, is one request and no finding', () => {
  // seq 1 is completed by seq 4 in the next batch, seq 5 by seq 6 in the same one.
  const parts: Record<number, number | 'part'> = { 1: 'part', 4: 1, 5: 'part', 6: 5 };
  const built = buildStream({ batches: clean, recordFor: (stream, seq) => split(stream, seq, parts) });
  const result = verifyEvidence(built.objects, options);
  assert.deepEqual(result.findings, []);
  assert.equal(result.totals.records, 9);
  assert.equal(result.totals.requests, 7);
  assert.equal(result.totals.incomplete, 0);
  assert.equal(summaryLine(result.totals), '1 streams, 3 batches, 9 records verified, 0 gaps');
});

test('a first part nothing completes is the incomplete request a crash leaves', () => {
  const parts: Record<number, number | 'part'> = { 1: 'part', 4: 1, 7: 'part' };
  const built = buildStream({ batches: clean, recordFor: (stream, seq) => split(stream, seq, parts) });
  const result = verifyEvidence(built.objects, options);
  assert.deepEqual(
    result.findings.map((f) => [f.level, f.code, f.key, f.message]),
    [
      [
        'WARN',
        'incomplete-record',
        batchKey(built.prefix, 3),
        '1 incomplete record(s): a crash before the outcome (seq 7)',
      ],
    ],
  );
  assert.equal(result.totals.requests, 8);
  assert.equal(result.totals.incomplete, 1);
  assert.equal(result.streams[0]?.incomplete, 1);
});

test('a completion that names no earlier incomplete request of its stream is INVALID', () => {
  const parts: Record<number, number | 'part'> = {
    // An id no record has.
    1: 99,
    // A record that is not a first part.
    2: 0,
    // A later record.
    3: 'part',
    4: 'part',
    5: 4,
    // The same part twice: the first completion holds, the second is reported.
    6: 4,
    7: 8,
    8: 'part',
  };
  const built = buildStream({ batches: clean, recordFor: (stream, seq) => split(stream, seq, parts) });
  const result = verifyEvidence(built.objects, options);
  const mismatches = result.findings.filter((f) => f.code === 'completion-mismatch');
  assert.deepEqual(
    mismatches.map((f) => [f.level, f.key, f.message]),
    // One finding per batch, counting its lines.
    [
      [
        'INVALID',
        batchKey(built.prefix, 1),
        `2 lines: seq 1 completes ${idOf(99)}: no record of its stream has that id; seq 2 completes ${idOf(0)}: seq 0 is no incomplete request record`,
      ],
      [
        'INVALID',
        batchKey(built.prefix, 3),
        `2 lines: seq 6 completes ${idOf(4)}: seq 4 is completed already, by seq 5; seq 7 completes ${idOf(8)}: seq 8 does not come before it`,
      ],
    ],
  );
  // seq 3 and seq 8 stay incomplete: nothing completes them validly.
  assert.equal(result.totals.incomplete, 2);
  assert.equal(result.streams[0]?.valid, false);
});

test("an approval's own records verify like any other, and are not incomplete requests", () => {
  const approval = {
    id: 'ml/ea-000001',
    requestedAt: '2025-06-01T10:00:00.000Z',
    approvers: [] as { subject: string; time: string; reason?: string }[],
  };
  const bob = { subject: 'bob', time: '2025-06-01T10:00:30.000Z', reason: 'reviewed' };
  const built = buildStream({
    batches: clean,
    recordFor: (stream, seq) => {
      const base = record(stream, seq);
      if (seq === 1) return { ...base, kind: 'approval.requested', outcome: 'held', status: null, approval };
      if (seq === 2) {
        return {
          ...base,
          kind: 'approval.decided',
          status: null,
          approval: { ...approval, approvers: [bob], decidedAt: bob.time },
        };
      }
      if (seq === 3) return { ...base, approval: { ...approval, approvers: [bob], decidedAt: bob.time } };
      return base;
    },
  });
  const result = verifyEvidence(built.objects, options);
  assert.deepEqual(result.findings, []);
  assert.equal(result.totals.incomplete, 0);
  assert.deepEqual(
    result.records.slice(0, 4).map((r) => r.kind),
    ['request', 'approval.requested', 'approval.decided', 'request'],
  );
});

test('an approval record that names no approval is malformed', () => {
  const built = buildStream({
    batches: clean,
    recordFor: (stream, seq) => ({
      ...record(stream, seq),
      ...(seq === 4 ? { kind: 'approval.decided', status: null } : {}),
    }),
  });
  const result = verifyEvidence(built.objects, options);
  assert.deepEqual(
    result.findings.map((f) => `${f.level} ${f.code} ${f.message}`),
    ['INVALID record-malformed line 2 (seq 4): an approval.decided record names no approval'],
  );
});

test('an approval record that carries a status is malformed', () => {
  const approval = { id: 'ml/ea-000001', requestedAt: '2025-06-01T10:00:00.000Z', approvers: [] };
  const built = buildStream({
    batches: clean,
    recordFor: (stream, seq) => ({
      ...record(stream, seq),
      ...(seq === 4 ? { kind: 'approval.requested', outcome: 'held', approval } : {}),
    }),
  });
  const result = verifyEvidence(built.objects, options);
  assert.deepEqual(
    result.findings.map((f) => `${f.level} ${f.code} ${f.message}`),
    ['INVALID record-malformed line 2 (seq 4): an approval.requested record carries status 200'],
  );
});

test('an approval record with two problems is one malformed line', () => {
  const built = buildStream({
    batches: clean,
    recordFor: (stream, seq) => ({
      ...record(stream, seq),
      ...(seq === 4 ? { kind: 'approval.requested', outcome: 'held' } : {}),
    }),
  });
  const result = verifyEvidence(built.objects, options);
  assert.deepEqual(
    result.findings.map((f) => `${f.level} ${f.code} ${f.message}`),
    [
      'INVALID record-malformed line 2 (seq 4): an approval.requested record names no approval and an approval.requested record carries status 200',
    ],
  );
});

test('a record shipped twice is a warning when identical, invalid when not', () => {
  const twice = buildStream({
    batches: [
      [0, 1, 2],
      [2, 3],
    ],
    recordFor: (stream, seq) => ({ ...record(stream, seq), id: `01J0000000000000000000000${seq}` }),
  });
  const result = verifyEvidence(twice.objects, options);
  assert.deepEqual(
    result.findings.map((f) => `${f.level} ${f.code} ${f.message}`),
    ['WARN duplicate-record line 1: seq 2 shipped twice, identical'],
  );
  assert.equal(result.totals.records, 4);
  const conflicting = buildStream({
    batches: [
      [0, 1, 2],
      [2, 3],
    ],
  });
  assert.deepEqual(codes(conflicting.objects), ['INVALID seq-conflict']);
});

test('the lines of a batch repeating a record are one finding that counts them', () => {
  const built = buildStream({ batches: clean });
  // Batch 2 declares seq 3 and 4; a signed batch of one line of seq 3, a thousand times, and one other.
  const [three] = built.lines.get(2) ?? [];
  const other = encodeRecordLine({ ...record(built.stream, 3), outcome: 'denied', status: 403 });
  const lines = [...Array.from({ length: 1000 }, () => three ?? ''), other].map((l) => Buffer.from(l));
  const bytes = gzipSync(Buffer.from(`${lines.join('\n')}\n`));
  const content = { records: lines.length, lastSeq: 3 + lines.length - 1, merkleRoot: merkleRootHex(lines) };
  const repeated = withBatch(2, bytes, content);
  const found = verifyEvidence(repeated.objects, options).findings.filter(
    (f) => f.code === 'duplicate-record' || f.code === 'seq-conflict',
  );
  assert.deepEqual(
    found.map((f) => `${f.level} ${f.code} ${f.key}: ${f.message}`),
    [
      `WARN duplicate-record ${batchKey(built.prefix, 2)}: 999 lines: line 2: seq 3 shipped twice, identical; line 3: seq 3 shipped twice, identical; line 4: seq 3 shipped twice, identical; line 5: seq 3 shipped twice, identical; line 6: seq 3 shipped twice, identical; …`,
      `INVALID seq-conflict ${batchKey(built.prefix, 2)}: line 1001: seq 3 appears twice with different content`,
    ],
  );
});

test('an unreadable manifest, batch or record line is reported', () => {
  const built = buildStream({ batches: clean });
  const badManifest = replaceAt(
    built.objects,
    manifestKey(built.prefix, 3),
    Buffer.from('{"format":"veil.manifest/v1"}'),
  );
  assert.ok(codes(badManifest).includes('INVALID manifest-malformed'));
  const lines = built.lines.get(2) ?? [];
  const bad = gzipSync(`${lines[0]}\nnot json\n`);
  const signed = buildStream({
    batches: clean,
    editBatch: (seq, batch) =>
      seq === 2 ? { ...batch, bytes: bad, content: { ...batch.content, sha256: sha256Hex(bad) } } : batch,
  });
  const withBadLine = replaceAt(signed.objects, batchKey(signed.prefix, 2), bad);
  const found = codes(withBadLine);
  assert.ok(found.includes('INVALID record-malformed'), found.join());
});

/** Gzip of `count` lines of "x": a few kilobytes that inflate to far more lines than any manifest declares. */
function lineBomb(count: number): Buffer {
  return gzipSync(Buffer.alloc(count * 2, 'x\n'), { level: 9 });
}

/** The clean stream with batch `seq` replaced by `bytes`, its manifest signed for them (and for `content`). */
function withBatch(seq: number, bytes: Uint8Array, content: Partial<BatchContent> = {}, spec = {}) {
  const built = buildStream({
    batches: clean,
    editBatch: (s, batch) =>
      s === seq
        ? { ...batch, bytes, content: { ...batch.content, sha256: sha256Hex(bytes), ...content } }
        : batch,
    ...spec,
  });
  return { ...built, objects: replaceAt(built.objects, batchKey(built.prefix, seq), bytes) };
}

test('a batch whose manifest no trusted key signed is reported by that finding and never read', () => {
  const untrusted = withBatch(2, lineBomb(100_000));
  assert.deepEqual(codes(untrusted.objects, { ...options, trustedKeys: [{ keyId: 'someone-else' }] }), [
    'INVALID untrusted-key',
  ]);
  const intruder = generateSigningKey();
  const unknown = withBatch(
    2,
    lineBomb(100_000),
    {},
    { signer: (seq: number, own: typeof intruder) => (seq === 2 ? intruder : own) },
  );
  assert.deepEqual(codes(unknown.objects), ['INVALID unknown-key']);
});

test('a signed batch is read no further than one line past the records its manifest declares', () => {
  // Batch 2 declares 2 records.
  const bomb = withBatch(2, lineBomb(100_000));
  const result = verifyEvidence(bomb.objects, options);
  assert.deepEqual(
    result.findings.map((f) => `${f.level} ${f.code} ${f.message}`),
    [
      `INVALID merkle-mismatch the Merkle root differs from ${manifestKey(bomb.prefix, 2)}`,
      'INVALID record-malformed 3 lines: line 1: not JSON; line 2: not JSON; line 3: not JSON',
      `INVALID batch-range-mismatch the records differ from ${manifestKey(bomb.prefix, 2)}: more than 3 lines for 2 records`,
    ],
  );
  assert.equal(result.totals.records, 7);
});

test('the malformed lines of a batch are one finding that counts them and names the first few', () => {
  const bad = withBatch(2, lineBomb(1000), { records: 1000, lastSeq: 1002 });
  const malformed = verifyEvidence(bad.objects, options).findings.filter(
    (f) => f.code === 'record-malformed',
  );
  assert.deepEqual(
    malformed.map((f) => `${f.key}: ${f.message}`),
    [
      `${batchKey(bad.prefix, 2)}: 1000 lines: line 1: not JSON; line 2: not JSON; line 3: not JSON; line 4: not JSON; line 5: not JSON; …`,
    ],
  );
});

test('a record line not in the canonical encoding of its record is malformed and not counted', () => {
  const lines = buildStream({ batches: clean }).lines.get(2) ?? [];
  // Read as allowed here, as denied by a parser that keeps the first of two members.
  const twice = lines.map((line, i) =>
    i === 0 ? line.replace('"outcome":"allowed"', '"outcome":"denied","outcome":"allowed"') : line,
  );
  const batch = encodeBatch(twice);
  const forged = withBatch(2, batch.bytes, batch.content);
  const result = verifyEvidence(forged.objects, options);
  assert.deepEqual(
    result.findings.filter((f) => f.code === 'record-malformed').map((f) => f.message),
    ['line 1: not the canonical encoding of its record: other parsers may read it otherwise'],
  );
  assert.deepEqual(
    result.records.map((r) => r.seq),
    [0, 1, 2, 4, 5, 6, 7, 8],
  );
});

test('which batch a misplaced one holds is looked up, not found by walking every manifest each time', () => {
  /** How often verifying walks a map's values, for a stream of `count` batches none of which matches its manifest. */
  const walks = (count: number): number => {
    const built = buildStream({ batches: Array.from({ length: count }, (_, i) => [i]) });
    const junk = built.manifests
      .slice(1, -1)
      .reduce(
        (objects, m) =>
          m.manifest.kind === 'batch'
            ? replaceAt(objects, m.manifest.batch.key, Buffer.from('junk'))
            : objects,
        built.objects,
      );
    const values = Map.prototype.values;
    let calls = 0;
    Map.prototype.values = function (this: Map<unknown, unknown>) {
      calls += 1;
      return values.call(this);
    };
    try {
      const found = codes(junk);
      assert.equal(found.filter((c) => c === 'INVALID batch-checksum-mismatch').length, count);
    } finally {
      Map.prototype.values = values;
    }
    return calls;
  };
  assert.equal(walks(200), walks(10));
});

test('the close manifest must end where the batches end', () => {
  const built = buildStream({ batches: clean, closeLastSeq: 7 });
  assert.deepEqual(codes(built.objects), ['INVALID close-mismatch']);
});

test('nothing may follow the closing manifest', () => {
  const built = buildStream({ batches: clean });
  const close = built.manifests.at(-1);
  assert.ok(close && close.manifest.kind === 'close');
  const seq = close.manifest.seq + 1;
  const unsigned = { ...close.manifest, key: manifestKey(built.prefix, seq), seq, prev: linkTo(close) };
  const after = storeManifest({ ...unsigned, signature: signManifest(unsigned, built.key) });
  assert.deepEqual(codes([...built.objects, stored(after.key, after.bytes, 60)]), ['INVALID after-close']);
});

// ---- storage: lock and retention --------------------------------------------------

test('the bucket lock configuration is checked, and local evidence is not WORM', () => {
  const built = buildStream({ batches: clean });
  assert.deepEqual(codes(built.objects, { ...options, bucketLock: { enabled: false } }), [
    'INVALID bucket-lock-disabled',
  ]);
  assert.deepEqual(codes(built.objects, { ...options, bucketLock: undefined }), [
    'INVALID bucket-lock-missing',
  ]);
  const local = built.objects.map(({ lockMode: _l, retainUntil: _r, ...rest }) => rest);
  const { minRetentionDays: _days, ...unbounded } = options;
  assert.deepEqual(codes(local, { ...unbounded, bucketLock: 'local' }), ['WARN not-worm']);
  // Asked for a retention, a directory shows none: no pass by silence.
  assert.deepEqual(codes(local, { ...options, bucketLock: 'local' }), [
    'WARN not-worm',
    'INVALID retention-too-short',
  ]);
});

test('every version must be locked in COMPLIANCE mode for long enough', () => {
  const built = buildStream({ batches: clean });
  const key = batchKey(built.prefix, 1);
  const governance = built.objects.map((o) =>
    o.key === key ? { ...o, lockMode: 'GOVERNANCE' as const } : o,
  );
  assert.deepEqual(codes(governance), ['INVALID object-not-locked']);
  const short = built.objects.map((o) =>
    o.key === key ? { ...o, retainUntil: new Date((o.lastModified as Date).getTime() + 30 * 86_400_000) } : o,
  );
  assert.deepEqual(codes(short), ['INVALID retention-too-short']);
  const expired = built.objects.map((o) =>
    o.key === key ? { ...o, retainUntil: new Date(now.getTime() - 1) } : o,
  );
  assert.deepEqual(codes(expired, { ...options, minRetentionDays: 0 }), ['WARN retention-expired']);
});

test('without a minimum retention, the length of a lock is not checked, and a warning says so', () => {
  const built = buildStream({ batches: clean });
  const key = batchKey(built.prefix, 1);
  const oneSecond = built.objects.map((o) =>
    o.key === key ? { ...o, retainUntil: new Date(now.getTime() + 1000) } : o,
  );
  const { minRetentionDays: _days, ...unbounded } = options;
  const result = verifyEvidence(oneSecond, unbounded);
  assert.deepEqual(
    result.findings.map((f) => [f.level, f.code, f.stream, f.message]),
    [['WARN', 'retention-not-checked', '-', 'retention length not checked: pass --min-retention-days']],
  );
  assert.equal(result.streams[0]?.valid, true);
  assert.deepEqual(codes(oneSecond), ['INVALID retention-too-short']);
});

test('a version stored without a full-object SHA-256 checksum is a warning', () => {
  const built = buildStream({ batches: clean });
  const key = batchKey(built.prefix, 2);
  const unchecked = built.objects.map((o): StoredObject => {
    if (o.key !== key) return o;
    const { checksumSha256: _sha, ...rest } = o;
    return rest;
  });
  const result = verifyEvidence(unchecked, options);
  assert.deepEqual(
    result.findings.map((f) => [f.level, f.code, f.key]),
    [['WARN', 'checksum-missing', key]],
  );
  assert.equal(result.totals.records, 9);
  // A plain directory stores no checksum at all: not-worm already says so.
  const local = unchecked.map(({ lockMode: _l, retainUntil: _r, checksumSha256: _c, ...rest }) => rest);
  assert.deepEqual(codes(local, { ...options, minRetentionDays: undefined, bucketLock: 'local' }), [
    'WARN not-worm',
  ]);
});

test('an INVALID finding about the bucket as a whole leaves no stream valid', () => {
  const built = buildStream({ batches: clean });
  for (const bucketLock of [{ enabled: false }, undefined] as const) {
    const result = verifyEvidence(built.objects, { ...options, bucketLock });
    assert.equal(result.findings[0]?.level, 'INVALID');
    assert.deepEqual(
      result.streams.map((s) => s.valid),
      [false],
    );
  }
  const local = built.objects.map(({ lockMode: _l, retainUntil: _r, ...rest }) => rest);
  const asked = verifyEvidence(local, { ...options, bucketLock: 'local' });
  assert.deepEqual(
    asked.streams.map((s) => s.valid),
    [false],
  );
  // A WARN about the bucket leaves the streams valid.
  const governed = verifyEvidence(built.objects, {
    ...options,
    bucketLock: { enabled: true, mode: 'GOVERNANCE' },
  });
  assert.deepEqual(codes(built.objects, { ...options, bucketLock: { enabled: true, mode: 'GOVERNANCE' } }), [
    'WARN bucket-lock-default',
  ]);
  assert.deepEqual(
    governed.streams.map((s) => s.valid),
    [true],
  );
});

test('findings print as one line each', () => {
  const finding: Finding = {
    level: 'INVALID',
    stream: 'prod/ml/uid/0',
    key: 'v1/prod/ml/uid/0/batches/00000000000000000001.ndjson.gz',
    code: 'batch-checksum-mismatch',
    message: 'SHA-256 differs',
  };
  assert.equal(
    formatFinding(finding),
    'INVALID prod/ml/uid/0 v1/prod/ml/uid/0/batches/00000000000000000001.ndjson.gz: SHA-256 differs',
  );
  const forged = { ...finding, key: 'x\nINVALID nothing: fine' };
  assert.equal(formatFinding(forged), 'INVALID prod/ml/uid/0 "x\\nINVALID nothing: fine": SHA-256 differs');
  // CSI (U+009B) clears the screen; U+202E shows "DILAV" as VALID.
  const reordered = { ...finding, key: 'v1/\u009b2J\u009bH\u202eDILAV 0 streams' };
  assert.equal(
    formatFinding(reordered),
    'INVALID prod/ml/uid/0 "v1/\\u009b2J\\u009bH\\u202eDILAV 0 streams": SHA-256 differs',
  );
});

test("a stream's last seq is the highest its batches hold, as the closing manifest is checked against", () => {
  const built = buildStream({
    batches: [
      [0, 1, 2],
      [6, 7, 8],
      [3, 4, 5],
    ],
    closeLastSeq: 8,
  });
  const result = verifyEvidence(built.objects, options);
  // Out of order is a gap where it shows, yet the close at 8 matches: no close-mismatch.
  assert.deepEqual(codes(built.objects), ['INVALID seq-gap']);
  assert.deepEqual([result.streams[0]?.firstSeq, result.streams[0]?.lastSeq], [0, 8]);
});

test('a stream with an INVALID finding is marked invalid in its summary', () => {
  const built = buildStream({ batches: clean });
  const objects = replaceAt(built.objects, batchKey(built.prefix, 1), gzipSync('x'));
  const result = verifyEvidence(objects, options);
  assert.equal(result.streams[0]?.valid, false);
  assert.equal(result.totals.records, 6);
});
