// The records of a signed batch, line by line, and the two parts of forwarded
// requests paired across the stream. A bad line is counted in one finding per
// code, never kept.

import { type DecodedLine, decodeLine, forEachLine } from '../batch.ts';
import { type BatchManifest, parseStreamId } from '../manifest.ts';
import { MerkleTree } from '../merkle.ts';
import type { AuditRecord } from '../record.ts';
import { matchCompletions } from '../requests.ts';
import type { FindingCode, FindingLevel } from './findings.ts';
import type { StreamState } from './stream-state.ts';
import { sum } from './sum.ts';
import { earliest, latest } from './timestamps.ts';

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
export function checkRecords(key: string, manifest: BatchManifest, text: Buffer, state: StreamState): void {
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
export function checkCompletions(state: StreamState): { count: number; incomplete: number } {
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
