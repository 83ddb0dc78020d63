// Shared by the audit tests: drafts, temporary directories, stores that fail
// on demand, reading a local evidence directory back for the verifier, and
// the files a directory's users hold open.
import { mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import type { TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type StoredObject, type VerifyResult, verifyEvidence } from '@veil/core';
import type { AuditDraft } from '../../src/audit/sink.ts';
import type { EvidenceObject, EvidenceStore } from '../../src/audit/store.ts';

export type Defer = (step: () => unknown) => void;

/** Teardown steps run last-registered first, so a recorder closes before its directory goes. */
export function teardown(t: TestContext): Defer {
  const steps: (() => unknown)[] = [];
  t.after(async () => {
    for (const step of steps.reverse()) await step();
  });
  return (step) => {
    steps.push(step);
  };
}

export async function tempDir(defer: Defer, name = 'veil-audit-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), name));
  defer(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A request record as the request path drafts it; `model` tells records apart. */
export function draft(model: string, outcome: AuditDraft['outcome'] = 'allowed'): AuditDraft {
  return {
    time: new Date().toISOString(),
    kind: 'request',
    outcome,
    status: outcome === 'allowed' ? 200 : 503,
    identity: { issuer: 'https://issuer.test', subject: 'alice', groups: ['ml'] },
    policy: { name: 'default', hash: 'sha256:test' },
    api: 'openai',
    route: '/v1/embeddings',
    model,
    inputCount: 1,
    latency: { totalMs: 1 },
  };
}

/**
 * Wraps a store: records the order of keys and fails while `failing(key)` says
 * so; while `losing(key)` says so it stores the object, then fails as if the
 * answer were lost.
 */
export class ScriptedStore implements EvidenceStore {
  readonly description = 'scripted store';
  readonly puts: string[] = [];
  /** The lock asked for each key stored, in milliseconds since the epoch. */
  readonly retainUntil = new Map<string, number>();
  failing: (key: string) => boolean = () => false;
  losing: (key: string) => boolean = () => false;
  failures = 0;
  readonly #inner: EvidenceStore;

  constructor(inner: EvidenceStore) {
    this.#inner = inner;
  }

  async put(object: EvidenceObject, signal?: AbortSignal): Promise<void> {
    if (this.failing(object.key)) {
      this.failures += 1;
      throw new Error('the store is away');
    }
    await this.#inner.put(object, signal);
    if (this.losing(object.key)) {
      this.failures += 1;
      throw new Error('the answer was lost');
    }
    this.puts.push(object.key);
    this.retainUntil.set(object.key, object.retainUntil.getTime());
  }

  close(): void {
    this.#inner.close();
  }
}

/** The files under `dir` this process holds open, deleted ones included (Linux's /proc). */
export async function openFilesUnder(dir: string): Promise<string[]> {
  const links = await Promise.all(
    (await readdir('/proc/self/fd')).map((fd) => readlink(join('/proc/self/fd', fd)).catch(() => '')),
  );
  return links.filter((link) => link.startsWith(`${dir}${sep}`)).sort();
}

/** Every file under `dir` as an object of the bucket layout. */
export async function readEvidenceDir(dir: string): Promise<StoredObject[]> {
  const objects: StoredObject[] = [];
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    const key = relative(dir, path).split(sep).join('/');
    objects.push({ key, isLatest: true, isDeleteMarker: false, bytes: await readFile(path) });
  }
  return objects;
}

export async function verifyDir(dir: string): Promise<VerifyResult> {
  return verifyEvidence(await readEvidenceDir(dir), { bucketLock: 'local', now: new Date() });
}

/** Polls until `check` holds; fails after `timeoutMs` with `what`. */
export async function eventually(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

export function invalid(result: VerifyResult): string[] {
  return result.findings.filter((f) => f.level === 'INVALID').map((f) => `${f.code} ${f.key}: ${f.message}`);
}
