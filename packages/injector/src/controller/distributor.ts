// Gets every target pod to enforce the current valid version of its policy.
// What each sidecar enforces is asked (GET) before anything is pushed, so a
// controller that restarts, or takes over from another, pushes only where a
// pod differs. Edits are debounced per policy; failures are retried with
// backoff; a bad version never gets here, so sidecars keep their last good one.
// A policy that does not exist (deleted, or gone before this controller
// started) is revoked from every pod still enforcing it: deleting a policy
// cuts its pods off. Deletions are debounced with edits, and each pod acts on
// the state its policy is in when its turn comes, so a policy deleted and
// re-created within the debounce is never revoked, and one re-created later
// is pushed after the revocation, never before it.
import { type BackoffOptions, backoffDelay } from './backoff.ts';
import { Limiter } from './limiter.ts';
import type { PodView } from './pods.ts';
import { policyKeyParts } from './policies.ts';
import type { PushOutcome, RevokeOutcome, SidecarClient, SidecarTarget } from './push.ts';

export type DesiredPolicy = { name: string; hash: string; spec: unknown };

export type PodSync = {
  uid: string;
  name: string;
  /** The hash the sidecar last reported; undefined when it has none or was never reached. */
  hash: string | undefined;
  /** Why the pod is not in sync, when something went wrong. */
  problem: string | undefined;
  /** Not yet asked since this controller became the leader: its hash may be stale. */
  unchecked: boolean;
};

export type PushEvent = { pod: PodView; hash: string; outcome: PushOutcome };

export type RevokeEvent = { pod: PodView; name: string; outcome: RevokeOutcome };

export type DistributorOptions = {
  client: Pick<SidecarClient, 'read' | 'push' | 'revoke'>;
  /**
   * Whether the policy exists, valid or not: a pod whose policy does not is
   * told to drop whatever it enforces. Only a sure "no" revokes.
   */
  policyExists(policyKey: string): boolean | Promise<boolean>;
  /**
   * Whether the policy cache holds what the API server holds. A cache whose
   * watch failed may push a version since replaced over the newer one a pod
   * took from another replica: nothing is pushed until it has listed again.
   * Always in sync when absent.
   */
  cacheInSync?(): boolean;
  /** Quiet time after an edit before pushing; default 100 ms. */
  debounceMs?: number;
  /** A stream of edits still pushes at least this often; default 1 s. */
  maxDebounceMs?: number;
  retry?: BackoffOptions;
  /** Pods worked on at once; default 32. */
  concurrency?: number;
  /** How often every pod is asked again, catching a sidecar that lost its policy; default 60 s. */
  resyncMs?: number;
  /** What a pod enforces, or why it does not, changed. */
  onPodChange?(policyKey: string): void;
  onPush?(event: PushEvent): void;
  onRevoke?(event: RevokeEvent): void;
};

type PodState = {
  view: PodView;
  hash: string | undefined;
  /** `hash` is what the sidecar enforces now, as far as this leader knows. */
  known: boolean;
  /** Asked at least once (reached or not) in this term. */
  checked: boolean;
  problem: string | undefined;
  busy: boolean;
  /** Something changed while busy: look again when done. */
  again: boolean;
  attempt: number;
  retry: NodeJS.Timeout | undefined;
  abort: AbortController | undefined;
};

type Step = 'done' | 'failed';

export class Distributor {
  readonly #options: DistributorOptions;
  readonly #limiter: Limiter;
  readonly #desired = new Map<string, DesiredPolicy>();
  readonly #pods = new Map<string, PodState>();
  readonly #debounce = new Map<string, { timer: NodeJS.Timeout; since: number }>();
  #resync: NodeJS.Timeout | undefined;
  #active = false;

  constructor(options: DistributorOptions) {
    this.#options = options;
    this.#limiter = new Limiter(options.concurrency ?? 32);
  }

  desired(policyKey: string): DesiredPolicy | undefined {
    return this.#desired.get(policyKey);
  }

  /** A new valid version: pushed to the policy's pods once edits pause. */
  setDesired(policyKey: string, desired: DesiredPolicy): void {
    const previous = this.#desired.get(policyKey);
    this.#desired.set(policyKey, desired);
    if (previous?.hash !== desired.hash || previous.name !== desired.name) this.#debounced(policyKey);
  }

  /**
   * The policy was deleted: once edits pause, its pods are told to drop it,
   * unless it exists again by then.
   */
  deleted(policyKey: string): void {
    this.#desired.delete(policyKey);
    this.#debounced(policyKey);
  }

  /** A policy replaced by another of the same name: its version is not pushed any more. */
  forget(policyKey: string): void {
    this.#desired.delete(policyKey);
    clearTimeout(this.#debounce.get(policyKey)?.timer);
    this.#debounce.delete(policyKey);
  }

  upsertPod(view: PodView): void {
    const pod = this.#pods.get(view.uid);
    if (pod === undefined) {
      const fresh: PodState = {
        view,
        hash: undefined,
        known: false,
        checked: false,
        problem: undefined,
        busy: false,
        again: false,
        attempt: 0,
        retry: undefined,
        abort: undefined,
      };
      this.#pods.set(view.uid, fresh);
      this.#options.onPodChange?.(view.policyKey);
      this.#kick(fresh);
      return;
    }
    const previous = pod.view;
    pod.view = view;
    const moved = previous.incarnation !== view.incarnation || previous.adminUrl !== view.adminUrl;
    if (moved) {
      // A restarted sidecar may have come back with an older policy.
      pod.known = false;
      pod.attempt = 0;
    }
    if (previous.policyKey !== view.policyKey) {
      this.#options.onPodChange?.(previous.policyKey);
      this.#options.onPodChange?.(view.policyKey);
    }
    if (moved || previous.policyKey !== view.policyKey) this.#kick(pod);
  }

  removePod(uid: string): void {
    const pod = this.#pods.get(uid);
    if (pod === undefined) return;
    this.#pods.delete(uid);
    this.#halt(pod);
    this.#options.onPodChange?.(pod.view.policyKey);
  }

  /** The pods that count towards the policy's status: reachable, and not on their way out. */
  podsOf(policyKey: string): PodSync[] {
    const pods: PodSync[] = [];
    for (const pod of this.#pods.values()) {
      const { view } = pod;
      if (view.policyKey !== policyKey || view.adminUrl === undefined || view.terminating) continue;
      pods.push({
        uid: pod.view.uid,
        name: pod.view.name,
        hash: pod.hash,
        problem: pod.problem,
        unchecked: !pod.checked,
      });
    }
    return pods;
  }

  /** Leadership won: ask every pod what it enforces, then push where it differs. */
  activate(): void {
    if (this.#active) return;
    this.#active = true;
    const resyncMs = this.#options.resyncMs ?? 60_000;
    this.#resync = setInterval(() => this.#resyncAll(), resyncMs);
    this.#resync.unref();
    for (const pod of this.#pods.values()) {
      // Another leader may have pushed meanwhile: nothing known carries over.
      pod.known = false;
      pod.checked = false;
      pod.attempt = 0;
      this.#kick(pod);
    }
    // A deletion seen while another replica led, or before this one started, is
    // debounced as if seen now: the policy may be re-created within it.
    const withoutVersion = new Set([...this.#pods.values()].map((pod) => pod.view.policyKey));
    for (const policyKey of withoutVersion) if (!this.#desired.has(policyKey)) this.#debounced(policyKey);
  }

  /** Leadership lost, or shutting down: nothing more goes out, in flight or planned. */
  deactivate(): void {
    this.#active = false;
    clearInterval(this.#resync);
    for (const { timer } of this.#debounce.values()) clearTimeout(timer);
    this.#debounce.clear();
    for (const pod of this.#pods.values()) this.#halt(pod);
  }

  #halt(pod: PodState): void {
    pod.abort?.abort();
    clearTimeout(pod.retry);
    pod.retry = undefined;
    pod.known = false;
    pod.again = false;
  }

  #resyncAll(): void {
    for (const pod of this.#pods.values()) {
      if (pod.busy || pod.retry !== undefined) continue;
      pod.known = false;
      this.#kick(pod);
    }
  }

  #debounced(policyKey: string): void {
    if (!this.#active) return;
    const now = Date.now();
    const pending = this.#debounce.get(policyKey);
    const since = pending?.since ?? now;
    clearTimeout(pending?.timer);
    const wait = Math.max(
      0,
      Math.min(this.#options.debounceMs ?? 100, since + (this.#options.maxDebounceMs ?? 1000) - now),
    );
    const timer = setTimeout(() => {
      this.#debounce.delete(policyKey);
      for (const pod of this.#pods.values()) if (pod.view.policyKey === policyKey) this.#kick(pod);
    }, wait);
    this.#debounce.set(policyKey, { timer, since });
  }

  #kick(pod: PodState): void {
    if (!this.#active) return;
    if (pod.busy) {
      pod.again = true;
      return;
    }
    clearTimeout(pod.retry);
    pod.retry = undefined;
    pod.busy = true;
    pod.again = false;
    void this.#run(pod);
  }

  async #run(pod: PodState): Promise<void> {
    const abort = new AbortController();
    pod.abort = abort;
    let step: Step;
    try {
      step = await this.#limiter.run(() =>
        abort.signal.aborted ? Promise.resolve('done' as const) : this.#step(pod, abort.signal),
      );
    } catch (error) {
      this.#note(pod, pod.hash, `internal error: ${(error as Error).message}`);
      step = 'failed';
    } finally {
      pod.busy = false;
      pod.abort = undefined;
    }
    if (abort.signal.aborted || !this.#active || this.#pods.get(pod.view.uid) !== pod) return;
    if (pod.again) return this.#kick(pod);
    if (step === 'done') {
      pod.attempt = 0;
      return;
    }
    const delay = backoffDelay(pod.attempt++, this.#options.retry ?? { initialMs: 250, maxMs: 30_000 });
    pod.retry = setTimeout(() => {
      pod.retry = undefined;
      this.#kick(pod);
    }, delay);
  }

  async #step(pod: PodState, signal: AbortSignal): Promise<Step> {
    const { adminUrl, uid, policyKey } = pod.view;
    if (adminUrl === undefined) return 'done';
    const target = { uid, adminUrl };
    if (!pod.known) {
      const read = await this.#options.client.read(target, signal);
      if (signal.aborted) return 'done';
      // The first answer of a term settles the pod for status, whatever it says.
      const first = !pod.checked;
      pod.checked = true;
      if (read.kind === 'error') {
        // Whatever it enforced before may be gone (a restarted sidecar that cannot
        // load it, say): until it answers, it counts as enforcing nothing.
        this.#note(pod, undefined, `unreachable: ${read.reason}`, first);
        return 'failed';
      }
      pod.known = true;
      this.#note(pod, read.kind === 'policy' ? read.hash : undefined, undefined, first);
    }
    // Edits still coming in: the debounce kicks the pod once they pause.
    if (this.#debounce.has(policyKey)) return 'done';
    const desired = this.#desired.get(policyKey);
    if (desired === undefined) return this.#revoke(pod, target, signal);
    if (pod.hash === desired.hash) {
      this.#note(pod, pod.hash, undefined);
      return 'done';
    }
    if (this.#options.cacheInSync?.() === false) {
      this.#note(pod, pod.hash, 'not pushed: the policy cache is not in sync with the API server');
      return 'failed';
    }
    const outcome = await this.#options.client.push(target, desired, signal);
    if (signal.aborted) return 'done';
    this.#options.onPush?.({ pod: pod.view, hash: desired.hash, outcome });
    switch (outcome.kind) {
      case 'ack': {
        const drift =
          outcome.hash === desired.hash ? undefined : `acknowledged ${outcome.hash}, not ${desired.hash}`;
        this.#note(pod, outcome.hash, drift);
        return drift === undefined ? 'done' : 'failed';
      }
      case 'nack':
        // The sidecar refused it and keeps its previous policy.
        this.#note(pod, pod.hash, `refused: ${outcome.reason}`);
        return 'failed';
      case 'error':
        // The push may have landed before the failure: ask before pushing again.
        pod.known = false;
        this.#note(pod, pod.hash, `push failed: ${outcome.reason}`);
        return 'failed';
    }
  }

  /** No valid version to push: a pod enforcing a policy that does not exist any more is told to drop it. */
  async #revoke(pod: PodState, target: SidecarTarget, signal: AbortSignal): Promise<Step> {
    const { policyKey } = pod.view;
    // An invalid policy that exists leaves its pods with their last good version.
    if (pod.hash === undefined || (await this.#options.policyExists(policyKey))) {
      this.#note(pod, pod.hash, undefined);
      return 'done';
    }
    const { name } = policyKeyParts(policyKey);
    const outcome = await this.#options.client.revoke(target, { name, hash: pod.hash }, signal);
    if (signal.aborted) return 'done';
    this.#options.onRevoke?.({ pod: pod.view, name, outcome });
    switch (outcome.kind) {
      case 'ack':
        this.#note(pod, undefined, undefined);
        return 'done';
      case 'nack':
        // It may enforce a version this leader has not seen (pushed by another): ask again.
        pod.known = false;
        this.#note(pod, pod.hash, `revocation refused: ${outcome.reason}`);
        return 'failed';
      case 'error':
        pod.known = false;
        this.#note(pod, pod.hash, `revocation failed: ${outcome.reason}`);
        return 'failed';
    }
  }

  #note(pod: PodState, hash: string | undefined, problem: string | undefined, force = false): void {
    if (!force && pod.hash === hash && pod.problem === problem) return;
    pod.hash = hash;
    pod.problem = problem;
    this.#options.onPodChange?.(pod.view.policyKey);
  }
}
