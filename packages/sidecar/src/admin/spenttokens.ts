import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { z } from 'zod';
import { parseJson } from '../controllercall.ts';
import { mkdirDurable, writeFileAtomic } from '../files.ts';

/**
 * What `spend` made of a token: first use, a replay, no room to record it,
 * (`unrecorded`) spent but its record could not be saved, or (`forgotten`)
 * issued before a start that could not read the record, so it may have been.
 */
export type Spend = 'spent' | 'replayed' | 'full' | 'unrecorded' | 'forgotten';

/** A token to spend: its `jti`, the last second it verifies, and when it was issued. */
export type Presented = { jti: string; until: number; issuedAt: number };

/** Far more pushes than a controller sends one pod while a token lives (one per policy version). */
const defaultCapacity = 1024;

/** The saved record: jti → the last second (epoch) at which the token still verifies. */
const savedSchema = z.record(z.string().min(1).max(128), z.number());

export type SpentTokensOptions = {
  capacity?: number;
  now?: () => number;
  /** Hears why a record on file could not be read. */
  log?: (message: string) => void;
  /** How far the issuer's clock may run ahead: a token it issued before the start may look this much younger. */
  clockToleranceSeconds?: number;
  /**
   * Where the record is kept across container restarts (the sidecar's state
   * folder); in memory only without it.
   */
  file?: string;
};

/**
 * The `jti`s of the push tokens this sidecar has accepted. Pushes come over TLS,
 * but a token that leaks elsewhere (a proxy log, a dump of the controller)
 * could be sent again while it is still valid; each is remembered until it is
 * not, and refused meanwhile. With a file the record outlives a restart of the
 * container, for the ~6 minutes a token may verify: each token is saved
 * before its push is applied.
 */
export class SpentTokens {
  readonly #until: Map<string, number>;
  readonly #capacity: number;
  readonly #now: () => number;
  readonly #file: string | undefined;
  /** Set when the record on file could not be read: tokens issued before this second may be in it. */
  #forgottenBefore: number | undefined;
  /** Saves run one at a time: each writes the whole record, and they share one temporary file. */
  #saving: Promise<unknown> = Promise.resolve();

  private constructor(until: Map<string, number>, options: SpentTokensOptions) {
    this.#until = until;
    this.#capacity = options.capacity ?? defaultCapacity;
    this.#now = options.now ?? (() => Math.floor(Date.now() / 1000));
    this.#file = options.file;
  }

  /**
   * The record as saved in `options.file`, expired tokens left out; empty when
   * there is none. A file that cannot be read or parsed does not stop the
   * start (the pod would crash-loop on it): every token issued before the
   * start is refused instead, as any of them may be in it, and the controller
   * pushes again with a new one.
   */
  static async open(options: SpentTokensOptions = {}): Promise<SpentTokens> {
    const tokens = new SpentTokens(new Map(), options);
    if (options.file === undefined) return tokens;
    const problem = await tokens.#load(options.file);
    if (problem !== undefined) {
      tokens.#forgottenBefore = tokens.#now() + (options.clockToleranceSeconds ?? 0);
      options.log?.(
        `the spent push tokens in ${options.file} ${problem}: tokens issued before this start are refused, and the controller's next push replaces the record`,
      );
    }
    return tokens;
  }

  /** Loads the record; what is wrong with it, if it cannot be. */
  async #load(file: string): Promise<string | undefined> {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      return `cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`;
    }
    const saved = savedSchema.safeParse(parseJson(text));
    if (!saved.success) return 'are not a record this sidecar wrote';
    const now = this.#now();
    for (const [jti, until] of Object.entries(saved.data)) if (until >= now) this.#until.set(jti, until);
    return undefined;
  }

  /**
   * Records `jti` as used until `until`, and saves the record when there is a
   * file. When the record is full of tokens that still verify, it refuses
   * rather than forgets one: forgetting would reopen that token to a replay.
   */
  async spend({ jti, until, issuedAt }: Presented): Promise<Spend> {
    if (this.#forgottenBefore !== undefined && issuedAt < this.#forgottenBefore) return 'forgotten';
    if (this.#until.has(jti)) return 'replayed';
    if (this.#until.size >= this.#capacity) this.#forgetExpired();
    if (this.#until.size >= this.#capacity) return 'full';
    // Spent in memory even when the save fails: it is refused now, and stays so.
    this.#until.set(jti, until);
    try {
      await this.#save();
    } catch {
      return 'unrecorded';
    }
    return 'spent';
  }

  #save(): Promise<void> {
    const file = this.#file;
    if (file === undefined) return Promise.resolve();
    const saved = this.#saving.then(async () => {
      this.#forgetExpired();
      await mkdirDurable(dirname(file));
      await writeFileAtomic(file, JSON.stringify(Object.fromEntries(this.#until)));
    });
    this.#saving = saved.catch(() => undefined);
    return saved;
  }

  #forgetExpired(): void {
    const now = this.#now();
    for (const [jti, until] of this.#until) if (until < now) this.#until.delete(jti);
  }
}
