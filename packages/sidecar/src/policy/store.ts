import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { LOOPBACK_KEYS_RISK, loopbackKeySources, policyHash, policySpecSchema } from '@veil/core';
import { z } from 'zod';
import type { Authenticator } from '../auth/authenticator.ts';
import { VectorRateLimiter } from '../enforce/limits.ts';
import { mkdirDurable, writeFileAtomic } from '../files.ts';
import { type ActivePolicy, type CompileOptions, compilePolicy, enterForce } from './active.ts';

export type ApplyResult =
  | { ok: true; hash: string; changed: boolean }
  /**
   * `superseded`: the policy in force was no longer the one `onlyOver` named;
   * `unbound`: the spec's hash was not `expectedHash`. Nothing was applied.
   */
  | { ok: false; reason: string; superseded?: true; unbound?: true };

export type RevokeResult =
  /** `changed`: a policy was in force until now. */
  | { ok: true; changed: boolean }
  /** `superseded`: as for an apply; nothing was dropped. */
  | { ok: false; reason: string; superseded?: true };

export type RevokeOptions = Pick<ApplyOptions, 'onlyOver' | 'onlyNamed'> & {
  /** Drop only this version: another in force was applied after the revocation was decided. */
  readonly onlyHash?: string;
};

export type ApplyOptions = {
  /**
   * Apply only if the store's `revision()` is still this when the apply's turn
   * comes: the pull's answer must not replace a push, or a revocation, that
   * landed while it was on its way. A revision, not the policy in force: a push
   * then a revocation leave nothing in force, as before, yet both are newer.
   */
  readonly onlyOver?: number;
  /**
   * Apply only a spec with this content hash: a push's token names the hash of
   * what the controller sent, and a body swapped on the way must not apply.
   */
  readonly expectedHash?: string;
  /**
   * Apply only a policy of this name, the one this sidecar was configured to
   * enforce: the controller pushes each pod the policy its `veil.dev/policy`
   * names, so another one means a fault or a compromise upstream.
   */
  readonly onlyNamed?: string;
};

const storedPolicySchema = z.union([
  // What a revocation leaves in place of the last good policy: the bootstrap,
  // written when the pod was admitted, is older and must not come back either.
  z.object({ name: z.string().min(1), revoked: z.literal(true) }),
  z.object({ name: z.string().min(1), spec: z.unknown() }),
]);

/**
 * How long a replaced authenticator stays open: requests that began under the
 * old policy may still be verifying a token (fetching a JWKS) with it.
 */
export const AUTH_RETIRE_DELAY_MS = 30_000;

/** Runs `close` once in-flight requests had time to finish. */
export type RetireScheduler = (close: () => void) => void;

const retireLater: RetireScheduler = (close) => {
  setTimeout(close, AUTH_RETIRE_DELAY_MS).unref();
};

export interface PolicyStoreOptions extends CompileOptions {
  readonly stateDir?: string;
  /** Says why a last good policy found on disk was passed over. */
  readonly log?: (message: string) => void;
  /** When a replaced authenticator is closed; tests inject their own. */
  readonly retire?: RetireScheduler;
  /** The rate limiter's clock; tests inject their own. */
  readonly now?: () => number;
}

/**
 * Holds the policy the request path enforces. A bad policy is refused and the
 * last good one stays in force; each good one is persisted so a restarted
 * sidecar serves at once, even with the controller down. A revocation (the
 * policy was deleted) leaves nothing in force, and a restart serves nothing
 * either until a policy is applied again.
 */
export class PolicyStore {
  #active: ActivePolicy | undefined;
  /** Goes up on every apply that changes the policy in force and on every revocation. */
  #revision = 0;
  readonly #options: CompileOptions;
  readonly #log: ((message: string) => void) | undefined;
  readonly #lastGoodFile: string | undefined;
  /** Where the sidecar keeps its state: the last good policy, and what else must outlive a restart. */
  readonly stateDir: string | undefined;
  readonly #listeners = new Set<(policy: ActivePolicy) => void>();
  readonly #retire: RetireScheduler;
  readonly #now: (() => number) | undefined;
  /** In a pod the model shares this loopback, so keys read there are unsafe; the kubelet sets this in every container. */
  readonly #inPod = Boolean(process.env.KUBERNETES_SERVICE_HOST);
  /** The versions already warned of: a policy pushed again is the same risk, said once. */
  readonly #warnedHashes = new Set<string>();
  /** Authenticators replaced by a push but not closed yet. */
  readonly #retiring = new Set<Authenticator>();
  /**
   * Applies run one at a time: each compiles against the policy the one before
   * left in force, and writes the last good file alone.
   */
  #applying: Promise<unknown> = Promise.resolve();
  /**
   * Every policy's rate-limit buckets, for the store's lifetime: requests still
   * charge and give back to them after the policy they began under is
   * replaced or revoked, and a policy applied again finds what each caller spent.
   */
  #limiter: VectorRateLimiter | undefined;

  constructor(options: PolicyStoreOptions) {
    this.#options = options;
    this.#log = options.log;
    this.#retire = options.retire ?? retireLater;
    this.#now = options.now;
    this.stateDir = options.stateDir || undefined;
    this.#lastGoodFile = this.stateDir ? join(this.stateDir, 'last-good-policy.json') : undefined;
  }

  current(): ActivePolicy | undefined {
    return this.#active;
  }

  /** How many changes (applies in force, revocations) the store has seen; see `onlyOver`. */
  revision(): number {
    return this.#revision;
  }

  onChange(listener: (policy: ActivePolicy) => void): void {
    this.#listeners.add(listener);
  }

  /** Validates and compiles raw; persists it when it is new. */
  apply(name: string, raw: unknown, options: ApplyOptions = {}): Promise<ApplyResult> {
    return this.#inTurn(() => this.#applyNow(name, raw, options));
  }

  /** Applies and revocations run one at a time, in the order asked. */
  #inTurn<T>(change: () => Promise<T>): Promise<T> {
    const done = this.#applying.then(change);
    this.#applying = done.catch(() => undefined);
    return done;
  }

  async #applyNow(name: string, raw: unknown, options: ApplyOptions): Promise<ApplyResult> {
    if (options.onlyOver !== undefined && options.onlyOver !== this.#revision) {
      return { ok: false, reason: 'another policy was applied meanwhile', superseded: true };
    }
    const parsed = policySpecSchema.safeParse(raw);
    if (!parsed.success) {
      return {
        ok: false,
        reason: parsed.error.issues.map((i) => `${i.path.join('.') || '(spec)'}: ${i.message}`).join('; '),
      };
    }
    if (options.expectedHash !== undefined && policyHash(parsed.data) !== options.expectedHash) {
      return { ok: false, reason: 'the policy is not the one its push token names', unbound: true };
    }
    // After the hash: a body swapped on its way is refused as such, whatever its name.
    if (options.onlyNamed !== undefined && name !== options.onlyNamed) {
      return { ok: false, reason: `this sidecar enforces policy ${options.onlyNamed}, not ${name}` };
    }
    this.#limiter ??= new VectorRateLimiter(parsed.data.limits.vectorsPerMinute, { now: this.#now });
    let next: ActivePolicy;
    try {
      next = compilePolicy(name, parsed.data, this.#options, {
        previous: this.#active,
        limiter: this.#limiter,
      });
    } catch (error) {
      return { ok: false, reason: (error as Error).message };
    }
    if (this.#active && this.#active.hash === next.hash && this.#active.name === name) {
      return { ok: true, hash: next.hash, changed: false };
    }
    const previous = this.#active;
    const newAuthenticator = previous?.authenticator !== next.authenticator;
    try {
      await this.#persist({ name, spec: parsed.data });
    } catch (error) {
      if (newAuthenticator) await next.authenticator.close().catch(() => undefined);
      throw error;
    }
    enterForce(next);
    this.#active = next;
    this.#revision += 1;
    if (previous && newAuthenticator) this.#retireLater(previous.authenticator);
    for (const listener of this.#listeners) listener(next);
    this.#warnOfLoopbackKeys(next);
    return { ok: true, hash: next.hash, changed: true };
  }

  /** Names each issuer and where its keys come from; a URL never carries credentials (refused by the schema). */
  #warnOfLoopbackKeys(policy: ActivePolicy): void {
    if (!this.#inPod || this.#warnedHashes.has(policy.hash)) return;
    const sources = loopbackKeySources(policy.spec.authentication);
    if (sources.length === 0) return;
    this.#warnedHashes.add(policy.hash);
    const named = sources.map((s) => `issuer ${s.issuer} from ${s.url} (${s.path})`).join(', ');
    this.#log?.(
      `warning: policy ${policy.name} ${policy.hash} reads the keys of ${named}: ${LOOPBACK_KEYS_RISK}`,
    );
  }

  /** Drops the policy in force, if `name` may be revoked, and replaces its saved copy by a revocation. */
  revoke(name: string, options: RevokeOptions = {}): Promise<RevokeResult> {
    return this.#inTurn(() => this.#revokeNow(name, options));
  }

  async #revokeNow(name: string, options: RevokeOptions): Promise<RevokeResult> {
    if (options.onlyOver !== undefined && options.onlyOver !== this.#revision) {
      return { ok: false, reason: 'another policy was applied meanwhile', superseded: true };
    }
    if (options.onlyNamed !== undefined && name !== options.onlyNamed) {
      return { ok: false, reason: `this sidecar enforces policy ${options.onlyNamed}, not ${name}` };
    }
    const previous = this.#active;
    if (options.onlyHash !== undefined && previous !== undefined && previous.hash !== options.onlyHash) {
      return {
        ok: false,
        reason: `this sidecar enforces ${previous.hash}, not the ${options.onlyHash} revoked`,
      };
    }
    // Out of force before the file is touched: a write that fails must not leave it serving.
    this.#active = undefined;
    this.#revision += 1;
    if (previous) this.#retireLater(previous.authenticator);
    await this.#persist({ name, revoked: true });
    return { ok: true, changed: previous !== undefined };
  }

  /** Closes the authenticators, the one in force and those being retired. */
  async close(): Promise<void> {
    const open = [...this.#retiring, ...(this.#active ? [this.#active.authenticator] : [])];
    this.#retiring.clear();
    await Promise.all(open.map((authenticator) => authenticator.close()));
  }

  #retireLater(authenticator: Authenticator): void {
    this.#retiring.add(authenticator);
    this.#retire(() => {
      // Already closed by close() when the sidecar stopped first.
      if (!this.#retiring.delete(authenticator)) return;
      void authenticator.close().catch(() => undefined);
    });
  }

  /**
   * Loads the persisted last good policy, else the bootstrap file; returns where
   * it came from, or `revoked` when the policy was revoked since the pod started.
   */
  async load(bootstrapFile?: string): Promise<'last-good' | 'bootstrap' | 'none' | 'revoked'> {
    for (const [source, file] of [
      ['last-good', this.#lastGoodFile],
      ['bootstrap', bootstrapFile],
    ] as const) {
      if (!file) continue;
      const stored = await readStored(file);
      if (stored === 'absent') continue;
      if (stored !== 'unreadable' && 'revoked' in stored) {
        this.#log?.(
          `policy ${stored.name} was revoked (deleted) before this start: serving nothing until the controller pushes a policy`,
        );
        return 'revoked';
      }
      const applied = stored === 'unreadable' ? undefined : await this.apply(stored.name, stored.spec);
      if (applied?.ok) return source;
      // The bootstrap, written at admission, may be older than what was acknowledged since.
      if (source === 'last-good') {
        this.#log?.(
          `the last good policy in ${file} is ${applied ? `refused (${applied.reason})` : 'unreadable'}; serving the bootstrap policy, if there is one, until the controller answers`,
        );
      }
    }
    return 'none';
  }

  // Synced, as it is what a restarted sidecar serves: a node crash must not
  // leave it torn, which would send the sidecar back to an older bootstrap.
  async #persist(stored: z.input<typeof storedPolicySchema>): Promise<void> {
    if (!this.#lastGoodFile) return;
    await mkdirDurable(dirname(this.#lastGoodFile));
    await writeFileAtomic(this.#lastGoodFile, JSON.stringify(stored));
  }
}

async function readStored(
  file: string,
): Promise<z.infer<typeof storedPolicySchema> | 'absent' | 'unreadable'> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'absent' : 'unreadable';
  }
  try {
    const parsed = storedPolicySchema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : 'unreadable';
  } catch {
    return 'unreadable';
  }
}
