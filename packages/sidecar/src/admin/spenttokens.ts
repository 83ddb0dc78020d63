import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { z } from 'zod';
import { mkdirDurable, writeFileAtomic } from '../files.ts';

/**
 * What `spend` made of a token: first use, a replay, no room to record it, or
 * (`unrecorded`) its record could not be saved, so it is refused.
 */
export type Spend = 'spent' | 'replayed' | 'full' | 'unrecorded';

/** Far more pushes than a controller sends one pod while a token lives (one per policy version). */
const defaultCapacity = 1024;

/** The saved record: jti → the last second (epoch) at which the token still verifies. */
const savedSchema = z.record(z.string().min(1).max(128), z.number());

export type SpentTokensOptions = {
  capacity?: number;
  now?: () => number;
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
 * before its push is applied, and one that cannot be saved is refused.
 */
export class SpentTokens {
  readonly #until: Map<string, number>;
  readonly #capacity: number;
  readonly #now: () => number;
  readonly #file: string | undefined;
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
   * there is none. A file that cannot be read or parsed fails the start: the
   * tokens it held would otherwise verify again.
   */
  static async open(options: SpentTokensOptions = {}): Promise<SpentTokens> {
    const tokens = new SpentTokens(new Map(), options);
    if (options.file !== undefined) await tokens.#load(options.file);
    return tokens;
  }

  async #load(file: string): Promise<void> {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw new Error(`the spent push tokens in ${file} cannot be read (${(error as Error).message})`);
    }
    let saved: z.infer<typeof savedSchema>;
    try {
      saved = savedSchema.parse(JSON.parse(text));
    } catch {
      throw new Error(
        `the spent push tokens in ${file} are not a record this sidecar wrote; delete the file to start afresh`,
      );
    }
    const now = this.#now();
    for (const [jti, until] of Object.entries(saved)) if (until >= now) this.#until.set(jti, until);
  }

  /**
   * Records `jti` as used until `until`, and saves the record when there is a
   * file. When the record is full of tokens that still verify, it refuses
   * rather than forgets one: forgetting would reopen that token to a replay.
   */
  async spend(jti: string, until: number): Promise<Spend> {
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
