// The fields a batch is described by (stream, seq, time), read off a record
// line without parsing it.
//
// Lines come from `encodeRecordLine`, which validated each record in full and
// wrote its fields in schema order, so every line begins
// `{"id":"…","time":"…","stream":"…","seq":N,`. Parsing and validating the
// whole line again where a batch is cut would cost most of the cutting, and
// would catch nothing: the sidecar's spool keeps only lines `encodeRecordLine`
// made, and refuses a line whose frame checksum fails, so a line reaching a
// batch is byte for byte one that was validated. What the batch itself relies
// on is still checked here: the line is one line (its bytes are a Merkle leaf
// and one NDJSON line), and the three fields have their exact shape. A line
// that does not begin as `encodeRecordLine` writes it is refused, never
// guessed at; and every line of a batch is validated in full again by the
// verifier.
import type { AuditRecord } from './record.ts';

export type RecordEnvelope = Pick<AuditRecord, 'stream' | 'seq' | 'time'>;

const envelopePattern =
  /^\{"id":"[0-7][0-9A-HJKMNP-TV-Z]{25}","time":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)","stream":("(?:[^"\\]|\\.)+"),"seq":(0|[1-9]\d{0,15}),"/;

/** Enough for the envelope of any usual record; a longer stream id makes the whole line be read. */
const headBytes = 256;

/** Throws a RangeError unless `line` (UTF-8) is a record line as `encodeRecordLine` writes it. */
export function readEnvelope(line: Uint8Array): RecordEnvelope {
  const bytes = Buffer.from(line.buffer, line.byteOffset, line.byteLength);
  if (bytes.includes(0x0a) || bytes.includes(0x0d)) throw new RangeError('a record line holds no line break');
  const match =
    envelopePattern.exec(bytes.toString('utf8', 0, headBytes)) ??
    envelopePattern.exec(bytes.toString('utf8'));
  const seq = Number(match?.[3]);
  if (!match || !Number.isSafeInteger(seq)) {
    throw new RangeError(
      'a record line begins with its id, time, stream and seq, as encodeRecordLine writes it',
    );
  }
  const quoted = match[2] as string;
  // JSON.parse only for a stream id with escapes in it: no usual one has any.
  const stream = quoted.includes('\\') ? (JSON.parse(quoted) as string) : quoted.slice(1, -1);
  return { stream, seq, time: match[1] as string };
}
