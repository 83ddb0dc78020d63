// A starting sidecar asks the controller for the current version of its policy:
// `GET /v1/policies/<namespace>/<name>` on the controller's pull endpoint, with the
// pod's projected service-account token (audience `veil-controller`), which the
// kubelet rotates and is therefore read again on every attempt.
//
// The pull never holds up startup: the last good or bootstrap policy serves while
// it runs, and it keeps trying in the background, with backoff, until the
// controller answers. What it answers goes through the store like a push does, so
// a policy the sidecar cannot use is refused and the last good one stays. A push
// or revocation that lands first supersedes the pull: it is the controller's newer word.
// The controller saying the policy does not exist (a 404 that says so, given
// only from a cache in sync) is a revocation: what was loaded at start, saved or
// bootstrap, is dropped. Any other failure keeps it serving.
import { setTimeout as sleep } from 'node:timers/promises';
import { type Dispatcher, request } from 'undici';
import { z } from 'zod';
import { type BackoffOptions, backoffDelay } from '../audit/backoff.ts';
import { ControllerAgent } from '../controllerca.ts';
import { parseJson, readControllerAnswer, readControllerToken } from '../controllercall.ts';
import type { PolicyStore } from './store.ts';

/** The controller's answer; unknown fields are ignored, the spec is the store's to validate. */
const pulledSchema = z.object({
  name: z.string().min(1),
  hash: z.string().optional(),
  spec: z.unknown(),
});

/** The controller's 404 for a policy that does not exist, as opposed to any other 404. */
const absentSchema = z.object({ status: z.literal('absent') });

type Answer = { kind: 'policy'; policy: z.infer<typeof pulledSchema> } | { kind: 'absent' };

/** A policy is a few kilobytes; anything far bigger is not one. */
const maxAnswerBytes = 1024 * 1024;

export const defaultPullBackoff: BackoffOptions = { baseMs: 1_000, capMs: 60_000 };

export type PullOutcome =
  /** The controller's version is in force (`changed`: it differed from the one loaded at start). */
  | { readonly kind: 'applied'; readonly hash: string; readonly changed: boolean }
  /** The controller answered a policy the store refused; the last good one stays. */
  | { readonly kind: 'refused'; readonly reason: string }
  /** A push or revocation landed before the pull's answer could; that answer was not used. */
  | { readonly kind: 'superseded' }
  /** The policy does not exist: nothing is in force, nor saved to come back at a restart. */
  | { readonly kind: 'absent' }
  /** Closed before any attempt succeeded. */
  | { readonly kind: 'stopped' };

/** One attempt that did not reach a verdict: worth trying again later. */
export class PullUnavailableError extends Error {
  override name = 'PullUnavailableError';
}

export interface PolicyPullOptions {
  /** The controller's pull endpoint, e.g. https://veil-injector.veil-system.svc:8444 */
  readonly url: string;
  /** The projected service-account token; read on every attempt. */
  readonly tokenFile: string;
  /** PEM CA bundle for the controller's serving certificate; the system roots when unset. */
  readonly caFile?: string;
  readonly namespace: string;
  readonly policyName: string;
  readonly store: PolicyStore;
  readonly backoff?: BackoffOptions;
  /** Connect and answer timeout of one attempt; default 10 s. */
  readonly timeoutMs?: number;
  readonly log?: (message: string) => void;
}

export interface PolicyPuller {
  /** Settles once the pull is over: applied, refused, superseded, absent or stopped. Never rejects. */
  readonly done: Promise<PullOutcome>;
  /** Stops retrying and waits for the attempt under way. */
  close(): Promise<void>;
}

/** Starts pulling at once and returns without waiting for the controller. */
export function startPolicyPull(options: PolicyPullOptions): PolicyPuller {
  const stop = new AbortController();
  const log = options.log ?? (() => undefined);
  const backoff = options.backoff ?? defaultPullBackoff;
  // A push that changed the policy, or a revocation, since the start moves the revision: the controller's newer word.
  const loaded = options.store.revision();
  const loadedPolicy = options.store.current() !== undefined;
  const timeoutMs = options.timeoutMs ?? 10_000;
  // The CA file is read on every attempt: it may appear, or rotate, after the start.
  const agent = new ControllerAgent({ caFile: options.caFile, connectTimeoutMs: timeoutMs });

  async function run(): Promise<PullOutcome> {
    for (let failures = 0; ; ) {
      if (stop.signal.aborted) return { kind: 'stopped' };
      if (options.store.revision() !== loaded) return { kind: 'superseded' };
      try {
        const answer = await fetchPolicy(options, await agent.get(), timeoutMs);
        if (stop.signal.aborted) return { kind: 'stopped' };
        if (answer.kind === 'absent') {
          const revoked = await options.store.revoke(options.policyName, { onlyOver: loaded });
          if (!revoked.ok) return { kind: 'superseded' };
          log(
            `policy pull: the controller says policy ${options.policyName} does not exist (deleted?): ${loadedPolicy ? 'the policy loaded at start is dropped; ' : ''}serving nothing until it is created`,
          );
          return { kind: 'absent' };
        }
        const pulled = answer.policy;
        const applied = await options.store.apply(pulled.name, pulled.spec, { onlyOver: loaded });
        if (!applied.ok && applied.superseded) return { kind: 'superseded' };
        if (!applied.ok) {
          // The same bytes would be refused again; the next push brings the next version.
          log(
            `policy pull: the controller's ${pulled.name} is refused, the last good policy stays: ${applied.reason}`,
          );
          return { kind: 'refused', reason: applied.reason };
        }
        if (failures > 0) log(`policy pull: succeeded after ${failures} failed attempts`);
        return { kind: 'applied', hash: applied.hash, changed: applied.changed };
      } catch (error) {
        failures += 1;
        if (failures === 1 || failures % 10 === 0)
          log(`policy pull: attempt ${failures} failed, retrying: ${(error as Error).message}`);
        try {
          await sleep(backoffDelay(failures, backoff), undefined, { signal: stop.signal });
        } catch {
          return { kind: 'stopped' };
        }
      }
    }
  }

  const done = run()
    .catch((error: unknown): PullOutcome => {
      log(`policy pull: stopped: ${(error as Error).message}`);
      return { kind: 'stopped' };
    })
    .finally(() => agent.close());

  return {
    done,
    async close() {
      stop.abort();
      await done;
    },
  };
}

async function fetchPolicy(
  options: PolicyPullOptions,
  agent: Dispatcher,
  timeoutMs: number,
): Promise<Answer> {
  const token = await readControllerToken(options.tokenFile);
  const base = options.url.replace(/\/+$/, '');
  const path = `/v1/policies/${encodeURIComponent(options.namespace)}/${encodeURIComponent(options.policyName)}`;
  let response: Dispatcher.ResponseData;
  try {
    response = await request(`${base}${path}`, {
      method: 'GET',
      dispatcher: agent,
      headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
  } catch (error) {
    const code = (error as { code?: string }).code ?? (error as Error).message;
    throw new PullUnavailableError(`the controller could not be reached (${code})`);
  }
  const text = await readControllerAnswer(response.body, maxAnswerBytes);
  if (response.statusCode === 404 && absentSchema.safeParse(parseJson(text)).success)
    return { kind: 'absent' };
  if (response.statusCode !== 200) {
    // 401/403: the token is not (yet) one the controller accepts; another 404:
    // not the controller's answer; 5xx: the controller cannot answer now. All may change.
    throw new PullUnavailableError(`the controller answered ${response.statusCode}: ${text.slice(0, 160)}`);
  }
  const json = parseJson(text);
  if (json === undefined) throw new PullUnavailableError('the controller answered 200 without JSON');
  const pulled = pulledSchema.safeParse(json);
  if (!pulled.success) throw new PullUnavailableError('the controller answered 200 with no policy in it');
  if (pulled.data.name !== options.policyName)
    throw new PullUnavailableError(
      `the controller answered policy ${pulled.data.name}, not ${options.policyName}`,
    );
  return { kind: 'policy', policy: pulled.data };
}
