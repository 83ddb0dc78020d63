// The evidence layout names each object's stream, kind and seq in its key: the
// originals are grouped by it, and a key outside it is reported, not verified.

import { parseEvidenceKey } from '../manifest.ts';
import { noStream, type Report } from './findings.ts';
import type { StoredObject } from './inputs.ts';

type Located = { key: string; object: StoredObject };
export type StreamLayout = {
  stream: string;
  prefix: string;
  manifests: Map<number, Located>;
  batches: Map<number, Located>;
};

export function groupStreams(originals: ReadonlyMap<string, StoredObject>, report: Report): StreamLayout[] {
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
