// Scenario P: how long a policy change takes to be enforced by a fleet of
// injected pods, from the write to the API server until every sidecar answers
// with the new content hash.
//
// The arrangement, so that the figure is honest on a small machine:
//  - a real etcd and kube-apiserver (`npm run infra`), with the Veil CRDs;
//  - the real injector (webhook and controller, a deployment's lease) in a
//    child process of its own, pinned to the proxy's core when taskset is
//    there: the controller is what a policy change exercises, so it gets the
//    core to itself, as the sidecar does in A to C;
//  - the stand-in pods (see the e2e support's standins.ts) in a second child:
//    created through the API, injected by the real webhook, each a real
//    sidecar on a loopback address of its own, which the controller reaches
//    at the pod IP and admin port the webhook wrote, with no test hook. They,
//    the API server, etcd and the bench share the other cores: on a cluster
//    they would be on other machines, so their share of the CPU can only make
//    the figure worse, not better;
//  - this process writes each change (a merge patch through the API, as the
//    e2e test's second measurement does; once through `kubectl apply`) and
//    polls every sidecar not yet there with GET /v1/policy, a round every
//    POLL_MS at most, so polling adds at most that to a figure of seconds.
// Each change edits the masking rule, so every version has its own content
// hash, and a last request through two of the sidecars shows the rule of the
// last version masking and the one before no longer in force. Between
// changes the bench waits until the policy's status reports every pod in sync,
// so each change starts from a quiet controller. The controller's push
// acknowledgements and the moment each sidecar's store took the version come
// from the children, on their clocks, brought onto this process's clock by
// the offset measured over their command pipes.
import { setTimeout as sleep } from 'node:timers/promises';
import { CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { GROUP, policyHash, policySpecSchema, VERSION } from '@veil/core';
import { startDevIssuer } from '@veil/sidecar';
import {
  applyPolicy,
  eventually,
  freshNamespace,
  installCrds,
  readPolicy,
  readyCondition,
} from '../e2e/kube/support/cluster.ts';
import {
  ensureInjectorNamespace,
  injectorFiles,
  registerWebhook,
  waitForWebhook,
} from '../e2e/kube/support/injector.ts';
import { type ControlPlane, freePort, infraBinary, startControlPlane } from '../harness/index.ts';
import type { InjectorLaunch, InjectorReady, PushTally } from './injector-process.ts';
import { type Child, startNodeChild } from './processes.ts';
import type { CpuLayout } from './setup.ts';
import type { StandInsLaunch, StandInsReady } from './standins-process.ts';
import { onTeardown, trackTempDir } from './teardown.ts';

export const POLL_MS = 20;
/** A change not enforced everywhere by then is reported as such. */
export const CHANGE_TIMEOUT_MS = 30_000;
const POLICY = 'default';
const AUDIENCE = 'veil';
const GROUP_NAME = 'ml-team';

export interface PropagationPlan {
  readonly standIns: number;
  /** Changes written through the API; one more goes through kubectl. */
  readonly changes: number;
  readonly cpus: CpuLayout;
  /** For the children's logs. */
  readonly dir: string;
}

export interface ChangeResult {
  readonly change: number;
  readonly via: 'API patch' | 'kubectl apply';
  /** The write itself: the API call, or kubectl from start to exit. */
  readonly writeMs: number;
  /** From the start of the write until the first, and the last, sidecar answered with the new hash. */
  readonly firstMs: number | undefined;
  readonly allMs: number | undefined;
  /** Sidecars answering with the new hash when polling stopped. */
  readonly enforcing: number;
  readonly acks: number;
  readonly lastAckMs: number | undefined;
  readonly refused: number;
  readonly failed: number;
  /** When the last sidecar's store took the version, by the sidecars' own stamps. */
  readonly switchedMs: number | undefined;
}

export interface PropagationResult {
  readonly standIns: number;
  readonly changes: ChangeResult[];
  /** What the model received through the first and the last stand-in after the last change. */
  readonly check: string;
  /** Largest round trip of the clock-offset measurements of the two children, ms. */
  readonly clockUncertaintyMs: number;
}

export class PropagationUnavailable extends Error {}

/** Version n masks employee ids with the prefix `E<n>-`: a masking rule of its own per version. */
function spec(issuer: string, n: number) {
  return {
    authentication: { oidc: [{ issuer, audiences: [AUDIENCE], algorithms: ['ES256'] }] },
    access: { rules: [{ name: 'team', groups: [GROUP_NAME] }] },
    masking: {
      rules: [
        {
          name: 'employee-ids',
          patterns: [{ name: 'employee-id', regex: `E${n}-[0-9]{6}` }],
          operator: 'redact',
          scopes: ['forward', 'audit'],
        },
      ],
    },
  };
}

const hashOf = (value: unknown) => policyHash(policySpecSchema.parse(value));
const now = () => performance.timeOrigin + performance.now();

export async function propagation(plan: PropagationPlan): Promise<PropagationResult> {
  try {
    for (const name of ['etcd', 'kube-apiserver', 'kubectl'] as const) infraBinary(name);
  } catch (error) {
    throw new PropagationUnavailable((error as Error).message);
  }
  const cp = await startControlPlane();
  trackTempDir(cp.dir);
  onTeardown('stop the control plane', () => cp.stop());
  await installCrds(cp);
  await ensureInjectorNamespace(cp);
  const adminPort = await freePort();
  const files = await injectorFiles(cp, { adminPort });
  const injector = await startNodeChild<InjectorReady>({
    name: 'injector',
    script: './injector-process.ts',
    env: {
      VEIL_BENCH_INJECTOR: JSON.stringify({ kubeconfig: cp.kubeconfig, files } satisfies InjectorLaunch),
    },
    cpus: plan.cpus.sidecar,
    logFile: `${plan.dir}/injector.log`,
  });
  await registerWebhook(cp, injector.ready.webhookUrl);
  await waitForWebhook(cp, await freshNamespace(cp, 'webhook-ready'));

  const issuer = await startDevIssuer({ host: '127.0.0.1' });
  onTeardown('stop the policy issuer', () => issuer.close());
  const namespace = await freshNamespace(cp, 'fleet');
  await applyPolicy(cp, namespace, POLICY, spec(issuer.issuer, 0));
  // Pods created before the controller has the policy would start without it.
  await eventually('the policy in the controller', async () =>
    (await injector.call<boolean>({ command: 'cached', namespace, name: POLICY })) ? true : undefined,
  );
  const standIns = await startNodeChild<StandInsReady>({
    name: 'stand-ins',
    script: './standins-process.ts',
    env: {
      VEIL_BENCH_STANDINS: JSON.stringify({
        kubeconfig: cp.kubeconfig,
        dir: cp.dir,
        namespace,
        count: plan.standIns,
        adminPort,
        controller: { url: injector.ready.pullUrl, caFile: cp.caCert },
      } satisfies StandInsLaunch),
    },
    cpus: plan.cpus.others,
    logFile: `${plan.dir}/standins.log`,
    timeoutMs: 300_000,
  });
  const adminUrls = standIns.ready.standIns.map((s) => s.adminUrl);
  const first = hashOf(spec(issuer.issuer, 0));
  const started = await enforcement(adminUrls, first, now(), 120_000);
  if (started.some((at) => at === undefined))
    throw new Error('the stand-ins never enforced their bootstrap policy');
  await inSync(cp, namespace, first, plan.standIns);

  const offsets = [await clockOffset(injector), await clockOffset(standIns)];
  const [injectorClock, standInsClock] = offsets;
  const api = cp.kubeConfig().makeApiClient(CustomObjectsApi);
  const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
  const changes: ChangeResult[] = [];
  for (let n = 1; n <= plan.changes + 1; n++) {
    const body = spec(issuer.issuer, n);
    const viaKubectl = n > plan.changes;
    const write = viaKubectl
      ? () => applyPolicy(cp, namespace, POLICY, body)
      : () =>
          api.patchNamespacedCustomObject(
            {
              group: GROUP,
              version: VERSION,
              plural: 'embeddingpolicies',
              namespace,
              name: POLICY,
              body: { spec: body },
            },
            mergePatch,
          );
    const hash = hashOf(body);
    const start = now();
    await write();
    const writeMs = now() - start;
    const seen = (await enforcement(adminUrls, hash, start, CHANGE_TIMEOUT_MS)).filter(
      (at) => at !== undefined,
    );
    if (seen.length === plan.standIns) await inSync(cp, namespace, hash, plan.standIns);
    const tally = await injector.call<PushTally>({ command: 'pushes', hash });
    const acks = tally.acks.map((at) => at - (injectorClock?.offset ?? 0) - start);
    const switched = (await standIns.call<number[]>({ command: 'switched', hash })).map(
      (at) => at - (standInsClock?.offset ?? 0) - start,
    );
    changes.push({
      change: n,
      via: viaKubectl ? 'kubectl apply' : 'API patch',
      writeMs,
      firstMs: seen.length > 0 ? Math.min(...seen) : undefined,
      allMs: seen.length === plan.standIns ? Math.max(...seen) : undefined,
      enforcing: seen.length,
      acks: acks.length,
      lastAckMs: acks.length > 0 ? Math.max(...acks) : undefined,
      refused: tally.refused,
      failed: tally.failed,
      switchedMs: switched.length === plan.standIns ? Math.max(...switched) : undefined,
    });
  }
  const check = await maskingCheck(standIns, issuer, plan.changes + 1, plan.standIns);
  return {
    standIns: plan.standIns,
    changes,
    check,
    clockUncertaintyMs: Math.max(...offsets.map((o) => o.roundTripMs / 2)),
  };
}

/**
 * Polls each sidecar's GET /v1/policy until it answers with `hash`, a round
 * every POLL_MS at most; returns, per sidecar, the ms from `start` to that
 * answer (undefined for one that did not get there before the timeout).
 */
async function enforcement(
  adminUrls: readonly string[],
  hash: string,
  start: number,
  timeoutMs: number,
): Promise<(number | undefined)[]> {
  const seenAt: (number | undefined)[] = adminUrls.map(() => undefined);
  const deadline = start + timeoutMs;
  for (;;) {
    const round = now();
    const pending = adminUrls.flatMap((url, i) => (seenAt[i] === undefined ? [{ url, i }] : []));
    if (pending.length === 0 || round > deadline) return seenAt;
    await Promise.all(
      pending.map(async ({ url, i }) => {
        try {
          const response = await fetch(`${url}/v1/policy`, { signal: AbortSignal.timeout(5_000) });
          const body = (await response.json()) as { hash?: string };
          if (body.hash === hash) seenAt[i] = now() - start;
        } catch {
          // A sidecar busy or restarting is simply not there yet.
        }
      }),
    );
    const rest = round + POLL_MS - now();
    if (rest > 0) await sleep(rest);
  }
}

/** Waits until the policy's status reports every pod in sync at `hash`: the controller is done with it. */
async function inSync(cp: ControlPlane, namespace: string, hash: string, total: number): Promise<void> {
  await eventually(
    `status ${total}/${total} at ${hash}`,
    async () => {
      const policy = await readPolicy(cp, namespace, POLICY);
      return policy.status?.contentHash === hash &&
        policy.status.podsInSync === total &&
        policy.status.observedGeneration === policy.metadata.generation &&
        readyCondition(policy)?.status === 'True'
        ? true
        : undefined;
    },
    60_000,
    50,
  );
}

/**
 * The child's clock minus this process's, from the exchange with the
 * shortest round trip of a few: the child answered somewhere in that trip.
 */
async function clockOffset(child: Child<unknown>): Promise<{ offset: number; roundTripMs: number }> {
  let best = { offset: 0, roundTripMs: Number.POSITIVE_INFINITY };
  for (let i = 0; i < 7; i++) {
    const sent = now();
    const theirs = await child.call<number>({ command: 'clock' });
    const back = now();
    if (back - sent < best.roundTripMs)
      best = { offset: theirs - (sent + back) / 2, roundTripMs: back - sent };
  }
  return best;
}

/**
 * Ids of the last version's prefix must reach the model masked, those of the
 * version before it must not: the sidecars enforce the content, not only
 * report its hash.
 */
async function maskingCheck(
  standIns: Child<StandInsReady>,
  issuer: Awaited<ReturnType<typeof startDevIssuer>>,
  last: number,
  count: number,
): Promise<string> {
  const token = await issuer.mint({ sub: 'bench-client', aud: AUDIENCE, groups: [GROUP_NAME] });
  const current = `E${last}-123456`;
  const previous = `E${last - 1}-654321`;
  for (const index of [0, count - 1]) {
    const seen = await standIns.call<string>({
      command: 'embed',
      index,
      token,
      text: `tickets ${current} and ${previous}`,
    });
    if (seen.includes(current) || !seen.includes(previous)) {
      throw new Error(
        `stand-in ${index} does not enforce version ${last}'s masking rule; the model saw ${seen.slice(0, 300)}`,
      );
    }
  }
  return `stand-ins 0 and ${count - 1} forwarded ${previous} but not ${current}`;
}
