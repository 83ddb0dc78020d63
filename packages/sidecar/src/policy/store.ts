import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { type PolicySpec, policySpecSchema } from '@veil/core';
import { z } from 'zod';
import { type ActivePolicy, type CompileOptions, compilePolicy } from './active.ts';

export type ApplyResult = { ok: true; hash: string; changed: boolean } | { ok: false; reason: string };

const storedPolicySchema = z.object({ name: z.string().min(1), spec: z.unknown() });

/**
 * Holds the policy the request path enforces. A bad policy is refused and the
 * last good one stays in force; each good one is persisted so a restarted
 * sidecar serves at once, even with the controller down.
 */
export class PolicyStore {
  #active: ActivePolicy | undefined;
  readonly #options: CompileOptions;
  readonly #lastGoodFile: string | undefined;
  readonly #listeners = new Set<(policy: ActivePolicy) => void>();

  constructor(options: CompileOptions & { stateDir?: string }) {
    this.#options = options;
    this.#lastGoodFile = options.stateDir ? join(options.stateDir, 'last-good-policy.json') : undefined;
  }

  current(): ActivePolicy | undefined {
    return this.#active;
  }

  onChange(listener: (policy: ActivePolicy) => void): void {
    this.#listeners.add(listener);
  }

  /** Validates and compiles raw; persists it when it is new. */
  async apply(name: string, raw: unknown): Promise<ApplyResult> {
    const parsed = policySpecSchema.safeParse(raw);
    if (!parsed.success) {
      return {
        ok: false,
        reason: parsed.error.issues.map((i) => `${i.path.join('.') || '(spec)'}: ${i.message}`).join('; '),
      };
    }
    let next: ActivePolicy;
    try {
      next = compilePolicy(name, parsed.data, this.#options, this.#active);
    } catch (error) {
      return { ok: false, reason: (error as Error).message };
    }
    if (this.#active && this.#active.hash === next.hash && this.#active.name === name) {
      return { ok: true, hash: next.hash, changed: false };
    }
    await this.#persist(name, parsed.data);
    this.#active = next;
    for (const listener of this.#listeners) listener(next);
    return { ok: true, hash: next.hash, changed: true };
  }

  /** Loads the persisted last good policy, else the bootstrap file; returns where it came from. */
  async load(bootstrapFile?: string): Promise<'last-good' | 'bootstrap' | 'none'> {
    for (const [source, file] of [
      ['last-good', this.#lastGoodFile],
      ['bootstrap', bootstrapFile],
    ] as const) {
      if (!file) continue;
      const stored = await readStored(file);
      if (stored && (await this.apply(stored.name, stored.spec)).ok) return source;
    }
    return 'none';
  }

  async #persist(name: string, spec: PolicySpec): Promise<void> {
    if (!this.#lastGoodFile) return;
    await mkdir(dirname(this.#lastGoodFile), { recursive: true });
    const temp = `${this.#lastGoodFile}.tmp`;
    await writeFile(temp, JSON.stringify({ name, spec }));
    await rename(temp, this.#lastGoodFile);
  }
}

async function readStored(file: string): Promise<z.infer<typeof storedPolicySchema> | undefined> {
  try {
    const parsed = storedPolicySchema.safeParse(JSON.parse(await readFile(file, 'utf8')));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}
