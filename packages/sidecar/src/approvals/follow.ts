// Following the approvals this sidecar opened until they are settled, so that
// every decision reaches the audit stream whether or not a caller is still
// waiting: a deferred caller that never retries, a held caller that hung up or
// whose hold timed out. Without this, the decision (who, when, why) would be
// lost once the controller's sweep deletes the settled approval.
//
// - Each `approval.requested` record this sidecar makes durable adds its
//   approval to the list (`watch`). A few workers ask the controller after
//   them, the GET a hold uses but without waiting, each approval at most every
//   `pollMs`: nobody waits on the follower, and a long poll would cost the
//   controller a read of the approval from the API server every quarter
//   second for each approval, for as long as it is open (hours, deferred).
// - Each decision is recorded once, shared with the requests that observe it
//   through RecordedDecisions, in the same `approval.decided` shape a request
//   records (its request's identity, policy, api, route, model and counts). A
//   decision a request recorded is on the list's record too (`watch`).
// - Past `maxFollowed` approvals, a new one is not followed (and this is
//   logged): its request goes on, as an approval opened by a pod that is gone.
// - An approval leaves the list once it is settled (Approved, Denied, Expired)
//   and all its decisions are recorded, or when the controller has no such
//   approval any more.
// - The list, with what was recorded of each, is kept in the state directory
//   (written atomically), so a sidecar restarted in the same pod goes on
//   following and records nothing twice.
import { readFile, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import { auditRecordSchema, timestampSchema } from '@veil/core';
import { z } from 'zod';
import type { AuditDraft, AuditSink } from '../audit/sink.ts';
import { mkdirDurable, writeFileAtomic } from '../files.ts';
import { type ApprovalsClient, type ApprovalView, isApprovalGone } from './client.ts';
import {
  type ApprovalEvent,
  type DecisionEvent,
  decisionEvents,
  decisionKey,
  type RecordedDecisions,
} from './evidence.ts';

/** The name of the list's file in the sidecar's state directory. */
export const FOLLOW_FILE = 'approvals-followed.json';

/** The most approvals followed at once (the default, and the most the list's file holds). */
export const MAX_FOLLOWED = 2_000;
/** More than any approval gets: its approvers' count, at most one decision each, and its expiry. */
const MAX_RECORDED = 256;
const DEFAULT_WORKERS = 4;
const DEFAULT_POLL_MS = 30_000;
const DEFAULT_BACKOFF = { baseMs: 1_000, capMs: 60_000 };

const dnsLabel = z.string().regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/);

/** What a decision's record says of the request the approval was opened for. */
const subjectSchema = auditRecordSchema.pick({
  identity: true,
  policy: true,
  api: true,
  route: true,
  model: true,
  inputCount: true,
});

const followedSchema = z.strictObject({
  namespace: dnsLabel,
  name: dnsLabel,
  requestedAt: timestampSchema,
  subject: subjectSchema,
  /** The keys (RecordedDecisions.key) of the decisions on record already. */
  recorded: z.array(z.string().max(4096)).max(MAX_RECORDED),
});
export type Followed = z.infer<typeof followedSchema>;

const stateSchema = z.strictObject({
  version: z.literal(1),
  approvals: z.array(followedSchema).max(MAX_FOLLOWED),
});

/** The list as kept on disk; throws naming what is wrong, never a value. */
export function parseFollowState(text: string): Followed[] {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error('the list of approvals followed is not JSON');
  }
  const parsed = stateSchema.safeParse(json);
  if (!parsed.success) {
    const where = parsed.error.issues[0]?.path.join('.') || '(top)';
    throw new Error(`the list of approvals followed is invalid at ${where}`);
  }
  return parsed.data.approvals;
}

export function serializeFollowState(approvals: readonly Followed[]): string {
  return `${JSON.stringify({ version: 1, approvals })}\n`;
}

/** The approval an `approval.requested` record opens, to follow; undefined for any other record. */
export function followedFromDraft(draft: AuditDraft): Followed | undefined {
  if (draft.kind !== 'approval.requested' || draft.approval === undefined) return undefined;
  const [namespace, name, ...rest] = draft.approval.id.split('/');
  const followed = followedSchema.safeParse({
    namespace,
    name,
    requestedAt: draft.approval.requestedAt,
    subject: {
      identity: draft.identity,
      policy: draft.policy,
      api: draft.api,
      route: draft.route,
      model: draft.model,
      inputCount: draft.inputCount,
    },
    recorded: [],
  });
  return rest.length === 0 && followed.success ? followed.data : undefined;
}

export function followedId(followed: Pick<Followed, 'namespace' | 'name'>): string {
  return `${followed.namespace}/${followed.name}`;
}

/** The events of `view` not on record for `followed` yet, in order. */
export function unrecorded(followed: Followed, view: ApprovalView): DecisionEvent[] {
  const recorded = new Set(followed.recorded);
  return decisionEvents(view, followed.requestedAt).filter(({ key }) => !recorded.has(key));
}

/** Whether no decision can come any more. */
export function isSettled(view: ApprovalView): boolean {
  return view.phase !== 'Pending';
}

/** The `approval.decided` record a follower writes: it answers nobody, and no request waits on it. */
export function decidedDraft(followed: Followed, event: ApprovalEvent, now: Date): AuditDraft {
  return {
    time: now.toISOString(),
    kind: event.kind,
    outcome: event.outcome,
    status: null,
    ...followed.subject,
    approval: event.approval,
    latency: { totalMs: 0 },
  };
}

/** The wait before the next try after `failures` failures in a row. */
export function backoffMs(failures: number, backoff: { baseMs: number; capMs: number }): number {
  const exponent = Math.min(Math.max(0, failures - 1), 30);
  return Math.min(backoff.capMs, backoff.baseMs * 2 ** exponent);
}

/** One approval followed, with when it is due to be asked after. */
export interface FollowSlot {
  readonly followed: Followed;
  dueAt: number;
  failures: number;
}

/**
 * Which approval a free worker asks after now: the one due longest, among
 * those no other worker is asking after; or how long until one is due.
 */
export function nextDue(
  slots: Iterable<[string, FollowSlot]>,
  busy: ReadonlySet<string>,
  now: number,
): { take: string } | { sleepMs: number | undefined } {
  let best: [string, FollowSlot] | undefined;
  for (const entry of slots) {
    if (busy.has(entry[0])) continue;
    if (best === undefined || entry[1].dueAt < best[1].dueAt) best = entry;
  }
  if (best === undefined) return { sleepMs: undefined };
  if (best[1].dueAt <= now) return { take: best[0] };
  return { sleepMs: best[1].dueAt - now };
}

export interface FollowerOptions {
  readonly client: ApprovalsClient;
  /** Where decisions are recorded: the sidecar's own audit sink, not the watched one. */
  readonly sink: AuditSink;
  /** Shared with the request path, so a decision both see is recorded once. */
  readonly decisions: RecordedDecisions;
  /** The list's file; without one, the list is kept in memory only. */
  readonly stateFile?: string;
  readonly log: (message: string) => void;
  readonly workers?: number;
  /** How often each approval is asked after; default 30 s (tests make it short). */
  readonly pollMs?: number;
  /** Past this many approvals, a new one is not followed; default (and at most) MAX_FOLLOWED. */
  readonly maxFollowed?: number;
  readonly backoff?: { baseMs: number; capMs: number };
}

/** Follows the approvals this sidecar opened; see the header comment. */
export class ApprovalFollower {
  readonly #options: FollowerOptions;
  readonly #slots = new Map<string, FollowSlot>();
  readonly #busy = new Set<string>();
  readonly #stop = new AbortController();
  readonly #sleepers = new Set<() => void>();
  #workers: Promise<void>[] = [];
  #saving: Promise<void> = Promise.resolve();
  /** Whether the last approval to follow found the list full: logged once per streak. */
  #full = false;

  private constructor(options: FollowerOptions) {
    this.#options = options;
  }

  /** Loads the list left by an earlier start, then follows it and whatever is opened from now on. */
  static async start(options: FollowerOptions): Promise<ApprovalFollower> {
    const follower = new ApprovalFollower(options);
    for (const followed of await loadFollowState(options.stateFile, options.log)) {
      follower.#slots.set(followedId(followed), { followed, dueAt: 0, failures: 0 });
      // What an earlier start recorded is not recorded again by a request that sees it.
      for (const key of followed.recorded) void options.decisions.once(key, () => Promise.resolve());
    }
    const count = options.workers ?? DEFAULT_WORKERS;
    follower.#workers = Array.from({ length: count }, () => follower.#work());
    return follower;
  }

  /** The approvals followed now, as the list's file has them. */
  followed(): Followed[] {
    return [...this.#slots.values()].map((slot) => slot.followed);
  }

  /**
   * `sink`, but an `approval.requested` record is durable only once its
   * approval is also on the list (or the list is full): a request whose
   * approval's place on the list cannot be saved fails closed, as one whose
   * record cannot be written does. A durable `approval.decided` record of an
   * approval followed goes on the list's record, so the follower does not
   * record it again after a restart.
   */
  watch(sink: AuditSink): AuditSink {
    return {
      accepting: () => sink.accepting(),
      append: (draft, until) => {
        const appended = sink.append(draft, until);
        const followed = followedFromDraft(draft);
        if (followed !== undefined) return appended.then(() => this.follow(followed));
        const key = decisionKey(draft);
        if (key === undefined || (until ?? 'durable') !== 'durable' || draft.approval === undefined)
          return appended;
        const { id } = draft.approval;
        return appended.then(() => this.#onRecord(id, key));
      },
      ...(sink.failed === undefined ? {} : { failed: () => sink.failed?.() ?? false }),
      close: () => sink.close(),
    };
  }

  /**
   * Adds an approval to the list and saves it; also once stopped, so the next
   * start follows it. A full list is no failure: the approval is open at the
   * controller already, and failing its request would leave it Pending, counted
   * against its caller, with an id nobody was told.
   */
  async follow(followed: Followed): Promise<void> {
    const id = followedId(followed);
    if (!this.#slots.has(id)) {
      const max = Math.min(this.#options.maxFollowed ?? MAX_FOLLOWED, MAX_FOLLOWED);
      if (this.#slots.size >= max) {
        if (!this.#full)
          this.#options.log(
            `${max} approvals are followed already: approval ${id}, and any opened before one settles, is not followed`,
          );
        this.#full = true;
        return;
      }
      this.#full = false;
      this.#slots.set(id, { followed, dueAt: 0, failures: 0 });
      this.#wake();
    }
    await this.#save();
  }

  /** A decision a request recorded, on the list's record of its approval. */
  async #onRecord(id: string, key: string): Promise<void> {
    const slot = this.#slots.get(id);
    if (slot === undefined || slot.followed.recorded.includes(key)) return;
    slot.followed.recorded.push(key);
    try {
      await this.#save();
    } catch (error) {
      // The record is durable: the request goes on; at worst a restart records the decision again.
      this.#options.log(`the list of approvals followed could not be saved (${(error as Error).message})`);
    }
  }

  /** Stops asking the controller; the list's file keeps what is left. */
  async close(): Promise<void> {
    this.#stop.abort();
    this.#wake();
    await Promise.all(this.#workers);
    await this.#saving.catch(() => undefined);
  }

  async #work(): Promise<void> {
    while (!this.#stop.signal.aborted) {
      const next = nextDue(this.#slots, this.#busy, performance.now());
      if ('sleepMs' in next) {
        await this.#sleep(next.sleepMs);
        continue;
      }
      this.#busy.add(next.take);
      try {
        await this.#askAfter(next.take);
      } finally {
        this.#busy.delete(next.take);
      }
    }
  }

  async #askAfter(id: string): Promise<void> {
    const slot = this.#slots.get(id);
    if (slot === undefined) return;
    const { namespace, name } = slot.followed;
    let view: ApprovalView;
    try {
      view = await this.#options.client.wait(namespace, name, 0, this.#stop.signal);
    } catch (error) {
      if (this.#stop.signal.aborted) return;
      if (isApprovalGone(error)) {
        this.#options.log(`approval ${id} no longer exists at the controller: no longer followed`);
        await this.#drop(id);
        return;
      }
      this.#failed(slot, id, 'could not be asked after', error);
      return;
    }
    try {
      await this.#record(slot, view);
    } catch (error) {
      this.#failed(slot, id, 'has a decision that could not be recorded', error);
      return;
    }
    slot.failures = 0;
    if (isSettled(view)) await this.#drop(id);
    else slot.dueAt = performance.now() + (this.#options.pollMs ?? DEFAULT_POLL_MS);
  }

  /** Records what is not on record yet, saving the list after each so a restart does not repeat it. */
  async #record(slot: FollowSlot, view: ApprovalView): Promise<void> {
    const { followed } = slot;
    for (const { key, event } of unrecorded(followed, view)) {
      await this.#options.decisions.once(key, async () =>
        this.#options.sink.append(decidedDraft(followed, event, new Date())),
      );
      // A request may have put it on record meanwhile (#onRecord).
      if (!followed.recorded.includes(key)) followed.recorded.push(key);
      await this.#save();
    }
  }

  #failed(slot: FollowSlot, id: string, what: string, error: unknown): void {
    slot.failures += 1;
    slot.dueAt = performance.now() + backoffMs(slot.failures, this.#options.backoff ?? DEFAULT_BACKOFF);
    // Once per streak, then now and then: a controller down for long is one story.
    if (slot.failures === 1 || slot.failures % 20 === 0)
      this.#options.log(`approval ${id} ${what} (${(error as Error).message}); trying again`);
  }

  async #drop(id: string): Promise<void> {
    this.#slots.delete(id);
    try {
      await this.#save();
    } catch (error) {
      // Left on the file, the approval is asked after again at the next start, and found settled.
      this.#options.log(`the list of approvals followed could not be saved (${(error as Error).message})`);
    }
  }

  #save(): Promise<void> {
    const file = this.#options.stateFile;
    if (file === undefined) return Promise.resolve();
    // Each save writes the list as it is when its turn comes; saves never overlap.
    const saved = this.#saving
      .catch(() => undefined)
      .then(() => writeFileAtomic(file, serializeFollowState(this.followed())));
    this.#saving = saved;
    return saved;
  }

  #sleep(ms: number | undefined): Promise<void> {
    if (this.#stop.signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#sleepers.delete(done);
        resolve();
      };
      const timer = ms === undefined ? undefined : setTimeout(done, ms);
      this.#sleepers.add(done);
    });
  }

  #wake(): void {
    for (const wake of [...this.#sleepers]) wake();
  }
}

/**
 * The list an earlier start left. One that cannot be read is reported and
 * set aside: following nothing of it is better than not serving at all.
 */
async function loadFollowState(
  file: string | undefined,
  log: (message: string) => void,
): Promise<Followed[]> {
  if (file === undefined) return [];
  await mkdirDurable(dirname(file));
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  try {
    return parseFollowState(text);
  } catch (error) {
    log(
      `${(error as Error).message}; set aside as ${FOLLOW_FILE}.unreadable, approvals on it are not followed`,
    );
    await rename(file, `${file}.unreadable`);
    return [];
  }
}
