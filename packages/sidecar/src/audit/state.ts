// The shipper's durable state, kept next to the spool: per stream its signing
// key, the head of its manifest chain and the next record seq to ship; the
// spool position up to which records are cut into batches; and the outbox,
// batches and manifests built but not yet acknowledged by the store.
//
// A manifest is stored here before it is uploaded, and uploaded only from
// here, so a retry after a crash sends the same bytes to the same key: the
// store then finds them already there instead of a conflicting version.
//
// The file is sealed with the SHA-256 of the state's text: one damaged digit
// of `cutSeq` would otherwise skip records that were answered but never shipped.
import { readdir, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type Ed25519PrivateJwk,
  ed25519PrivateJwkSchema,
  importSigningKey,
  type Manifest,
  manifestSchema,
  type SigningKey,
  type StreamRef,
  sha256Hex,
  streamId,
} from '@veil/core';
import { z } from 'zod';
import { mkdirDurable, tempPathOf, writeFileAtomic } from '../files.ts';
import type { ReserveUse, SpaceReserve } from './reserve.ts';

/** The state does not describe the spool it sits next to; nothing is guessed. */
export class AuditStateError extends Error {
  override name = 'AuditStateError';
}

const segment = z.string().min(1);
const streamRefSchema = z.strictObject({
  cluster: segment,
  namespace: segment,
  podUid: segment,
  incarnation: segment,
});

const streamRecordSchema = z.strictObject({
  ref: streamRefSchema,
  key: ed25519PrivateJwkSchema,
  /** The stream's latest manifest: the next one links to it. */
  head: manifestSchema,
  /** The seq the stream's next batch starts at. */
  nextRecordSeq: z.int().min(0),
  /** The longest retention any of its batches was cut with: none of its objects is locked shorter. Absent in states of earlier versions. */
  retentionMs: z.int().min(0).optional(),
});
export type StreamRecord = z.infer<typeof streamRecordSchema>;

const outboxItemSchema = z.strictObject({
  manifest: manifestSchema,
  /** For a batch manifest: its batch object in the outbox, and the last spool seq it holds. */
  batch: z
    .strictObject({ file: z.string().regex(/^[0-9a-f]{64}\.ndjson\.gz$/), spoolUpto: z.int().min(0) })
    .optional(),
  /**
   * The retention it was cut with, kept for its upload: records spooled during
   * an outage, or before a policy lowered it, keep the retention they were
   * answered under. Absent in states of earlier versions.
   */
  retentionMs: z.int().min(0).optional(),
});
export type OutboxItem = z.infer<typeof outboxItemSchema>;

const stateSchema = z.strictObject({
  version: z.literal(1),
  /** The first spool seq not yet cut into a batch. */
  cutSeq: z.int().min(0),
  streams: z.array(streamRecordSchema),
  /** In upload order. */
  outbox: z.array(outboxItemSchema),
  /** The policy's retention at the last cut: what applies while no policy is loaded. */
  retentionMs: z.int().min(0).optional(),
});
export type StateData = z.infer<typeof stateSchema>;

/** The file: the state's JSON text as written, and its SHA-256. */
const sealedStateSchema = z.strictObject({
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  state: z.string(),
});

const stateName = 'state.json';
const outboxName = 'outbox';

export class ShipState {
  readonly #dir: string;
  readonly #reserve: SpaceReserve;
  readonly #keys = new Map<string, SigningKey>();
  #data: StateData;
  #saving: Promise<void> = Promise.resolve();
  /** False when no state was found: a new spool. */
  readonly found: boolean;

  private constructor(dir: string, reserve: SpaceReserve, data: StateData, found: boolean) {
    this.#dir = dir;
    this.#reserve = reserve;
    this.#data = data;
    this.found = found;
  }

  /** Loads the state in `dir` (a new one cut from `cutSeq` if none) and drops outbox files it does not list. */
  static async open(dir: string, cutSeq: number, reserve: SpaceReserve): Promise<ShipState> {
    // Lost to a crash, the state would leave the spool's records with no stream to ship them in.
    await mkdirDurable(join(dir, outboxName), 0o700);
    const loaded = await readState(join(dir, stateName));
    const data = loaded ?? { version: 1 as const, cutSeq, streams: [], outbox: [] };
    const state = new ShipState(dir, reserve, data, !!loaded);
    await state.#dropStrayFiles();
    return state;
  }

  get data(): Readonly<StateData> {
    return this.#data;
  }

  stream(id: string): StreamRecord | undefined {
    return this.#data.streams.find((stream) => streamId(stream.ref) === id);
  }

  signingKey(stream: StreamRecord): SigningKey {
    const id = streamId(stream.ref);
    let key = this.#keys.get(id);
    if (!key) {
      key = importSigningKey(stream.key);
      this.#keys.set(id, key);
    }
    return key;
  }

  /**
   * Makes `next` the state, durably; until this resolves the old state stands.
   * `step` names it in an error for want of room; `use` says whether it may give up the volume's reserve.
   */
  commit(next: StateData, step: string, use: ReserveUse): Promise<void> {
    const path = join(this.#dir, stateName);
    const run = this.#saving.then(async () => {
      await this.#reserve.write(step, path, use, () => writeFileAtomic(path, sealState(next)));
      this.#data = next;
    });
    // One failed write must not fail every later one.
    this.#saving = run.catch(() => undefined);
    return run;
  }

  /** Writes a batch's outbox copy; `use` as for `commit`. */
  async writeBatch(file: string, bytes: Uint8Array, use: ReserveUse): Promise<void> {
    const path = this.batchPath(file);
    await this.#reserve.write('keep a copy of a batch until it is uploaded', path, use, () =>
      writeFileAtomic(path, bytes),
    );
  }

  batchPath(file: string): string {
    return join(this.#dir, outboxName, file);
  }

  async removeBatch(file: string): Promise<void> {
    await unlink(this.batchPath(file)).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error;
    });
  }

  // A crash between writing a batch file and committing the state that lists it leaves the file behind.
  async #dropStrayFiles(): Promise<void> {
    const listed = new Set(this.#data.outbox.flatMap((item) => (item.batch ? [item.batch.file] : [])));
    for (const name of await readdir(join(this.#dir, outboxName))) {
      if (!listed.has(name)) await unlink(join(this.#dir, outboxName, name));
    }
    await unlink(tempPathOf(join(this.#dir, stateName))).catch(() => undefined);
  }
}

export function newStreamRecord(ref: StreamRef, key: Ed25519PrivateJwk, genesis: Manifest): StreamRecord {
  return { ref, key, head: genesis, nextRecordSeq: 0 };
}

function sealState(data: StateData): string {
  const text = JSON.stringify(data);
  return JSON.stringify({ sha256: sha256Hex(text), state: text });
}

async function readState(path: string): Promise<StateData | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  const json = parseJson(text, path);
  const sealed = sealedStateSchema.safeParse(json);
  // Unsealed: written by a version before the seal; sealed at the first commit, which opening makes.
  if (!sealed.success) return parseState(json, path);
  if (sha256Hex(sealed.data.state) !== sealed.data.sha256) {
    throw new AuditStateError(
      `${path} fails its SHA-256 check: damaged since it was written; nothing is guessed`,
    );
  }
  return parseState(parseJson(sealed.data.state, path), path);
}

function parseJson(text: string, path: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new AuditStateError(`${path} is not JSON`);
  }
}

function parseState(json: unknown, path: string): StateData {
  const parsed = stateSchema.safeParse(json);
  if (!parsed.success) {
    const fields = [...new Set(parsed.error.issues.map((issue) => issue.path.join('.') || '(state)'))];
    throw new AuditStateError(`${path} is not a valid shipper state: ${fields.join(', ')}`);
  }
  return parsed.data;
}
