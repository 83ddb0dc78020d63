// What the checks of one stream share while they walk it.

import type { Manifest } from '../manifest.ts';
import type { AuditRecord } from '../record.ts';
import type { Report } from './findings.ts';
import type { VerifyOptions } from './inputs.ts';
import type { StreamLayout } from './layout.ts';

export type Entry<M extends Manifest = Manifest> = { key: string; manifest: M; sha256: string };

export type StreamState = {
  layout: StreamLayout;
  options: VerifyOptions;
  report: Report;
  /** Record line bytes by seq, to tell a re-shipped duplicate from a conflict. */
  seen: Map<number, Uint8Array>;
  records: AuditRecord[];
  /** The batch key each record was read from, for findings about it. */
  keys: Map<AuditRecord, string>;
};
