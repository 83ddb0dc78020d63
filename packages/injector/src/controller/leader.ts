// Leader election over a coordination.k8s.io/v1 Lease, the way client-go does
// it: the holder renews every renewInterval; a candidate takes the lease over
// only once it has seen it unchanged for a whole lease duration, timed by its
// own monotonic clock (so clocks of different nodes never need to agree).
// Every write is conditional on the resourceVersion read, so two candidates
// cannot both win. A leader that cannot renew steps down before anyone else
// could take over: at the latest leaseDuration - renewInterval after its last
// successful renew began.
import { performance } from 'node:perf_hooks';
import { type CoordinationV1Api, type V1Lease, V1MicroTime } from '@kubernetes/client-node';
import type { Log } from './log.ts';
import { statusCode } from './statuswriter.ts';

export type LeaderElectionOptions = {
  api: CoordinationV1Api;
  namespace: string;
  /** Default `veil-controller`. */
  name?: string;
  identity: string;
  /** Default 15. */
  leaseDurationSeconds?: number;
  /** How often the leader renews and candidates look; default 5000. */
  renewIntervalMs?: number;
  onStartedLeading(): void;
  onStoppedLeading(): void;
  log: Log;
};

export const defaultLeaseName = 'veil-controller';

export class LeaderElector {
  readonly #options: LeaderElectionOptions;
  readonly #name: string;
  readonly #durationSeconds: number;
  readonly #intervalMs: number;
  #leading = false;
  #stopped = true;
  #observed: { resourceVersion: string; at: number } | undefined;
  #timer: NodeJS.Timeout | undefined;
  #deadline: NodeJS.Timeout | undefined;
  #tick: Promise<void> = Promise.resolve();

  constructor(options: LeaderElectionOptions) {
    this.#options = options;
    this.#name = options.name ?? defaultLeaseName;
    this.#durationSeconds = options.leaseDurationSeconds ?? 15;
    this.#intervalMs = options.renewIntervalMs ?? 5000;
    if (!Number.isInteger(this.#durationSeconds) || this.#durationSeconds < 1) {
      throw new Error('leaseDurationSeconds must be a whole number of seconds, at least 1');
    }
    if (this.#intervalMs * 2 > this.#durationSeconds * 1000) {
      throw new Error(
        'renewIntervalMs must be at most half the lease duration, leaving time to retry a renew',
      );
    }
  }

  isLeader(): boolean {
    return this.#leading;
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#schedule(0);
  }

  /**
   * Stops campaigning. With `release` (a graceful shutdown) the lease is handed
   * back at once, so another replica need not wait for it to expire.
   */
  async stop(options: { release?: boolean } = {}): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#tick;
    this.#stepDown('stopping');
    // Released even when not leading: an attempt under way may just have won it.
    if (options.release ?? true) await this.#release();
  }

  #schedule(delayMs: number): void {
    this.#timer = setTimeout(() => {
      this.#tick = this.#attempt()
        .catch((error) =>
          this.#options.log.warn('lease attempt failed', { lease: this.#name, error: messageOf(error) }),
        )
        .finally(() => {
          if (!this.#stopped) this.#schedule(this.#intervalMs);
        });
    }, delayMs);
  }

  async #attempt(): Promise<void> {
    const { api, namespace, identity } = this.#options;
    const startedAt = performance.now();
    let lease: V1Lease;
    try {
      lease = await api.readNamespacedLease({ name: this.#name, namespace });
    } catch (error) {
      if (statusCode(error) !== 404) throw error;
      return this.#create(startedAt);
    }
    if (this.#stopped) return;
    const resourceVersion = lease.metadata?.resourceVersion ?? '';
    if (this.#observed?.resourceVersion !== resourceVersion)
      this.#observed = { resourceVersion, at: startedAt };
    const holder = lease.spec?.holderIdentity;
    const durationMs = (lease.spec?.leaseDurationSeconds ?? this.#durationSeconds) * 1000;
    const mine = holder === identity;
    const expired = !holder || startedAt >= this.#observed.at + durationMs;
    if (!mine && !expired) {
      this.#stepDown(`the lease is held by ${holder}`);
      return;
    }
    const now = new V1MicroTime();
    const body: V1Lease = {
      ...lease,
      spec: {
        ...lease.spec,
        holderIdentity: identity,
        leaseDurationSeconds: this.#durationSeconds,
        renewTime: now,
        ...(mine ? {} : { acquireTime: now, leaseTransitions: (lease.spec?.leaseTransitions ?? 0) + 1 }),
      },
    };
    try {
      this.#renewed(await api.replaceNamespacedLease({ name: this.#name, namespace, body }), startedAt);
    } catch (error) {
      // Another candidate wrote first; the next look decides.
      if (statusCode(error) !== 409) throw error;
    }
  }

  async #create(startedAt: number): Promise<void> {
    const { api, namespace, identity } = this.#options;
    const now = new V1MicroTime();
    const body: V1Lease = {
      metadata: { name: this.#name, namespace },
      spec: {
        holderIdentity: identity,
        leaseDurationSeconds: this.#durationSeconds,
        acquireTime: now,
        renewTime: now,
        leaseTransitions: 0,
      },
    };
    try {
      this.#renewed(await api.createNamespacedLease({ namespace, body }), startedAt);
    } catch (error) {
      if (statusCode(error) !== 409) throw error;
    }
  }

  #renewed(lease: V1Lease, startedAt: number): void {
    if (this.#stopped) return;
    this.#observed = { resourceVersion: lease.metadata?.resourceVersion ?? '', at: startedAt };
    // The watchdog: without another renew by then, step down even if the API
    // call that should renew is still hanging.
    clearTimeout(this.#deadline);
    const deadline = startedAt + this.#durationSeconds * 1000 - this.#intervalMs;
    this.#deadline = setTimeout(
      () => this.#stepDown('the lease was not renewed in time'),
      Math.max(0, deadline - performance.now()),
    );
    if (this.#leading) return;
    this.#leading = true;
    this.#options.log.info('leading', { lease: this.#name, identity: this.#options.identity });
    this.#options.onStartedLeading();
  }

  #stepDown(reason: string): void {
    clearTimeout(this.#deadline);
    if (!this.#leading) return;
    this.#leading = false;
    this.#options.log.warn('stopped leading', {
      lease: this.#name,
      identity: this.#options.identity,
      reason,
    });
    this.#options.onStoppedLeading();
  }

  async #release(): Promise<void> {
    const { api, namespace, identity, log } = this.#options;
    try {
      const lease = await api.readNamespacedLease({ name: this.#name, namespace });
      if (lease.spec?.holderIdentity !== identity) return;
      await api.replaceNamespacedLease({
        name: this.#name,
        namespace,
        body: {
          ...lease,
          spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: new V1MicroTime() },
        },
      });
    } catch (error) {
      // The lease then simply expires.
      log.warn('lease not released', { lease: this.#name, error: messageOf(error) });
    }
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
