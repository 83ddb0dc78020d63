// The approvals API sidecars call when a request is held, over HTTPS:
//   POST /v1/approvals                         open: creates the EmbeddingApproval
//   GET  /v1/approvals/<ns>/<name>?wait=S      the decision, long-polled up to S seconds
//   POST /v1/approvals/<ns>/<name>/use         consume it for one requester and payload
// plus a sweep that marks Pending approvals Expired once stale or once their rule
// changed, and deletes settled ones kept their time past expiry, and a
// Slack-compatible notification for each new one.
//
// Authentication: the sidecar presents its pod's projected service-account token
// (audience `veil-controller`, as for policy pulls) and the API server vouches for
// it through a TokenReview. Only an injected pod may call: the token must be bound
// to a pod (the TokenReview names it and its UID), and that pod, read from the API
// server, must carry the injected label and the same UID. Every route but
// /healthz is checked, by the route it matched, before its body is read. An
// approval is opened for the pod the token names, never one the body names. It is
// read and used by any injected pod of its namespace, not only the one that
// opened it: a retry after a restart comes from another pod of the Deployment.
// What a caller cannot do is approve: decisions go through the API server and
// its stamping webhook, and consuming an approval needs the requester identity
// and payload digest it was opened for. Because an opener chooses what approvers
// are shown, a use must also present the policy, rule and counts the sidecar
// actually holds, and checkUse refuses any that differ from the approval's (see
// @veil/core's approvals/lifecycle.ts).
//
// An approval holds under the rule it was opened under: the hash of that rule's
// content is recorded in spec.ruleHash at opening (the spec only the controller
// may change), and a use is refused (409, reason `rule`) once the policy's rule
// differs or is gone. An approval without it (opened before it was recorded) is
// refused the same way. A replica that knows no valid version of a policy that
// still exists (a fresh one while the latest edit is invalid) cannot tell, and
// answers 503: another replica, or this one later, can.
//
// Approver groups, count, expiry and notification come from the EmbeddingPolicy
// the controller holds, never from the sidecar. The sidecar sends a masked summary
// and counts only; the controller caps the summary and stores no inputs.
//
// Every approval is kept past its expiry, so one requester (issuer and subject)
// may have at most the policy's approvals.maxPendingPerCaller approvals Pending
// in a namespace: an open beyond it is refused 429. Each approval carries a
// label hashing its requester, by which they are counted; two opens at once may
// both pass, so the cap holds about, not exactly.
import { createHash, randomBytes } from 'node:crypto';
import {
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import {
  type ApprovalRule,
  type ApprovalSpec,
  type ApprovalStatus,
  type ApprovalView,
  approvalSpecSchema,
  approvalStatusSchema,
  approvalView,
  checkUse,
  countsAsPending,
  expiryDue,
  GROUP,
  isPlain,
  markFailure,
  missingApprovalError,
  newApprovalSpec,
  openApprovalSchema,
  openProblems,
  pendingQuotaRefusal,
  policySpecSchema,
  removalDue,
  ruleChangeRefusal,
  useApprovalSchema,
  VERSION,
} from '@veil/core';
import fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import { type Dispatcher, request } from 'undici';
import { z } from 'zod';
import { type HttpsListener, listenHttps, tlsOptions } from '../certs/listening.ts';
import { type CertificateFiles, readCertificatePair } from '../certs/reload.ts';
import { veilLabels } from '../webhook/annotations.ts';
import { ApprovalWaits } from './approval-waits.ts';
import type { DesiredPolicy } from './distributor.ts';
import type { Log } from './log.ts';
import { policyPlural } from './policies.ts';
import type { Caller } from './pull.ts';

const plural = 'embeddingapprovals';
const requesterLabelName = 'veil.dev/requester';
const dnsLabel = z
  .string()
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/)
  .max(63);

export type Notification = { text: string; blocks?: unknown[] };

export type ApprovalsApiOptions = {
  kubeConfig: KubeConfig;
  tls: CertificateFiles;
  host?: string;
  /** Defaults to 8445; 0 picks a free port. */
  port?: number;
  policy(namespace: string, name: string): DesiredPolicy | undefined;
  /**
   * Whether `policy` answers from a cache in sync with the API server. Out of
   * sync, the version it holds may have been edited or deleted since: no
   * approval is opened, used or expired on its rules meanwhile. Always in sync
   * when absent.
   */
  policiesInSync?(): boolean;
  authenticate(token: string): Promise<Caller | undefined>;
  log: Log;
  now?: () => Date;
  /** Sends one notification; defaults to `httpsNotifier()`. */
  notify?: (url: string, message: Notification) => Promise<void>;
  /** How often stale approvals are expired and old ones deleted; default 10 s. */
  expiryIntervalMs?: number;
  /** How long a settled approval is kept past its expiry before it is deleted; undefined keeps it. */
  keepForMs?: number;
  /** The most long polls one pod holds at once; past them, one is answered at once. Default 64. */
  maxLongPollsPerPod?: number;
};

export type ApprovalsApi = {
  url: string;
  port: number;
  /** One sweep now: how many approvals it expired, deleted, and failed to handle. */
  sweepNow(): Promise<SweepCounts>;
  close(): Promise<void>;
};

const maxWaitSeconds = 600;
/** How often an approval long-polled is re-read, however many long polls wait on it. */
const pollMs = 250;
/**
 * A sidecar holds a caller's requests up to its policy's maxPendingPerCaller
 * (default 10), and all held requests within half its body budget: a few
 * callers' worth. Past this, a pod's long poll is answered at once, as it
 * stands, and the sidecar asks again a second later.
 */
const defaultMaxLongPollsPerPod = 64;

export type Stored = {
  metadata: {
    name: string;
    namespace: string;
    creationTimestamp?: string | Date;
    resourceVersion?: string;
  };
  spec: ApprovalSpec;
  status: ApprovalStatus;
};

export async function startApprovalsApi(options: ApprovalsApiOptions): Promise<ApprovalsApi> {
  const api = options.kubeConfig.makeApiClient(CustomObjectsApi);
  const now = options.now ?? (() => new Date());
  const notify = options.notify ?? httpsNotifier();
  const inSync = options.policiesInSync ?? (() => true);
  const initial = await readCertificatePair(options.tls);
  const app = fastify({ https: { ...tlsOptions, ...initial }, logger: false });

  async function read(namespace: string, name: string): Promise<Stored | undefined> {
    try {
      return toStored(
        await api.getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural, name }),
      );
    } catch (error) {
      if ((error as { code?: number }).code === 404) return undefined;
      throw error;
    }
  }

  async function patchStatus(stored: Stored, patch: unknown[]): Promise<Stored> {
    const { namespace, name, resourceVersion } = stored.metadata;
    return toStored(
      await api.patchNamespacedCustomObjectStatus(
        {
          group: GROUP,
          version: VERSION,
          namespace,
          plural,
          name,
          body: [{ op: 'test', path: '/metadata/resourceVersion', value: resourceVersion }, ...patch],
        },
        setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
      ),
    );
  }

  /** Marks a Pending approval Expired once its time is up; returns the current state. */
  function expireIfDue(stored: Stored): Promise<Stored> {
    return expire(stored, expiryDue(stored.spec, stored.status, now()) ? {} : undefined);
  }

  /** Marks a Pending approval Expired, with `due.message` if any; undefined: not due, nothing to do. */
  async function expire(stored: Stored, due: { message?: string } | undefined): Promise<Stored> {
    if (due === undefined) return stored;
    try {
      // The whole status, as one opened without a status (its first write failed) has none to amend.
      const status = { ...stored.status, phase: 'Expired', ...due };
      return await patchStatus(stored, [{ op: 'add', path: '/status', value: status }]);
    } catch {
      // Somebody decided, or another replica expired it, meanwhile: read what is stored.
      return (await read(stored.metadata.namespace, stored.metadata.name)) ?? stored;
    }
  }

  /**
   * Why the sweep marks a Pending approval Expired, or undefined while it may
   * still be used: its time is up, or the rule it was opened under has changed
   * or gone in the valid version of the policy this replica holds. A use would
   * then be refused (409, reason `rule`, as reads and uses answer meanwhile),
   * so approvers would decide in vain, and the requester is to ask anew; the
   * message says why. Without a valid version here, only time expires it.
   */
  function sweepExpiry(stored: Stored): { message?: string } | undefined {
    if (stored.status.phase !== 'Pending') return undefined;
    if (expiryDue(stored.spec, stored.status, now())) return {};
    if (!inSync()) return undefined;
    const desired = options.policy(stored.metadata.namespace, stored.spec.policy);
    if (desired === undefined) return undefined;
    const refusal = ruleChangeRefusal(stored.metadata.name, stored.spec, ruleIn(desired, stored.spec.rule));
    return refusal === undefined ? undefined : { message: refusal.error };
  }

  /** Deletes a settled approval kept its time, unless it changed since it was read. */
  async function removeIfDue(stored: Stored): Promise<boolean> {
    const { keepForMs } = options;
    if (keepForMs === undefined || !removalDue(stored.spec, stored.status, now(), keepForMs)) return false;
    const { namespace, name, resourceVersion } = stored.metadata;
    try {
      await api.deleteNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace,
        plural,
        name,
        body: { preconditions: { resourceVersion } },
      });
      return true;
    } catch (error) {
      // Another replica's sweep deleted it, or it changed: the next sweep looks again.
      const code = (error as { code?: number }).code;
      if (code === 404 || code === 409) return false;
      throw error;
    }
  }

  const waits = new ApprovalWaits<Stored>({
    read: async (namespace, name) => {
      const stored = await read(namespace, name);
      return stored === undefined ? undefined : expireIfDue(stored);
    },
    settled: (stored) => stored.status.phase !== 'Pending',
    pollMs,
    maxPerPod: options.maxLongPollsPerPod ?? defaultMaxLongPollsPerPod,
  });

  /**
   * The approval once decided, or as it stands at `deadline`; undefined once
   * gone. Past the pod's long polls, as it stands now.
   */
  async function awaitDecision(
    who: PodCaller,
    stored: Stored,
    deadline: number,
    gone: () => boolean,
  ): Promise<Stored | undefined> {
    if (stored.status.phase !== 'Pending' || performance.now() >= deadline) return stored;
    const leave = waits.enter(`${who.namespace}/${who.pod.name}`);
    if (leave === undefined) return stored;
    try {
      return await waits.wait(stored.metadata.namespace, stored.metadata.name, deadline, gone);
    } finally {
      leave();
    }
  }

  const core = options.kubeConfig.makeApiClient(CoreV1Api);
  const callers = new WeakMap<FastifyRequest, PodCaller>();

  /** Whether the pod a token is bound to is, as the API server has it now, an injected pod of that UID. */
  async function isInjectedPod(namespace: string, pod: { name: string; uid: string }): Promise<boolean> {
    try {
      const stored = await core.readNamespacedPod({ namespace, name: pod.name });
      return stored.metadata?.uid === pod.uid && stored.metadata?.labels?.[veilLabels.injected] === 'true';
    } catch (error) {
      if ((error as { code?: number }).code === 404) return false;
      throw error;
    }
  }

  /** Lets an injected pod's bound token through; answers anything else (401, 403, or 503 when it cannot tell). */
  async function authenticatePod(
    request: FastifyRequest,
    reply: FastifyReply,
  ): Promise<FastifyReply | undefined> {
    const token = /^Bearer (.+)$/i.exec(request.headers.authorization ?? '')?.[1];
    let who: Caller | undefined;
    let injected = false;
    try {
      who = token ? await options.authenticate(token) : undefined;
      injected = who?.pod !== undefined && (await isInjectedPod(who.namespace, who.pod));
    } catch (error) {
      // Fail closed: no answer without a verdict from the API server.
      options.log.warn('approvals caller not verified', { error: (error as Error).message });
      return reply.code(503).send({ error: 'cannot verify the caller now; retry' });
    }
    if (who === undefined) return reply.code(401).send({ error: 'a service-account token is required' });
    if (who.pod === undefined || !injected) {
      options.log.warn('approvals caller refused', { caller: who.username, pod: who.pod?.name });
      return reply.code(403).send({
        error:
          who.pod === undefined
            ? `${who.username}: the token is not bound to a pod (use its projected token)`
            : `pod ${who.namespace}/${who.pod.name} is not an injected pod`,
      });
    }
    callers.set(request, { username: who.username, namespace: who.namespace, pod: who.pod });
    return undefined;
  }

  function callerOf(request: FastifyRequest): PodCaller {
    const who = callers.get(request);
    if (who === undefined) throw new Error(`${request.routeOptions.url} ran without its caller check`);
    return who;
  }

  // By the route matched, not the raw URL: the router decodes the path
  // (`/%761/approvals` is `/v1/approvals`), a prefix test on the URL does not.
  // Every route added after this hook is checked unless named here.
  app.addHook('onRoute', (route) => {
    if (unauthenticatedRoutes.has(route.url)) return;
    route.onRequest = [authenticatePod, ...[route.onRequest ?? []].flat()];
  });

  app.get('/healthz', async () => 'ok');

  app.post('/v1/approvals', async (request, reply) => {
    const who = callerOf(request);
    const body = openApprovalSchema.safeParse(request.body);
    if (!body.success)
      return reply.code(400).send({ error: `invalid approval request: ${openProblems(body.error)}` });
    const namespace = who.namespace;
    if (!inSync()) return reply.code(503).send({ error: outOfSync(namespace, body.data.policy) });
    const desired = options.policy(namespace, body.data.policy);
    const spec = desired ? policySpecSchema.safeParse(desired.spec) : undefined;
    const approvals = spec?.success ? spec.data.approvals : undefined;
    const rule = approvals?.rules.find((r) => r.name === body.data.rule);
    if (approvals === undefined || rule === undefined) {
      return reply.code(404).send({
        error: `no approval rule ${body.data.rule} in EmbeddingPolicy ${namespace}/${body.data.policy}`,
      });
    }
    const pending = await pendingOf(namespace, body.data.requester);
    const overQuota = pendingQuotaRefusal(
      pending,
      approvals.maxPendingPerCaller,
      namespace,
      `EmbeddingPolicy ${body.data.policy}`,
    );
    if (overQuota !== undefined) {
      options.log.info('approval refused: too many pending', {
        namespace,
        rule: rule.name,
        caller: who.username,
        pending,
      });
      return reply.code(429).send({ error: overQuota });
    }
    // The pod is the one the token is bound to: what approvers are shown of it is not the opener's word.
    const opened = { ...body.data, pod: { name: who.pod.name } };
    const stored = await create(namespace, newApprovalSpec(opened, namespace, rule, now()));
    const { name } = stored.metadata;
    options.log.info('approval opened', { namespace, name, rule: rule.name, caller: who.username });
    if (rule.notify) {
      notify(rule.notify.url, notification(stored)).catch((error) =>
        options.log.warn('approval notification failed', {
          namespace,
          name,
          error: (error as Error).message,
        }),
      );
    }
    return reply.code(201).send(view(stored, rule));
  });

  app.get('/v1/approvals/:namespace/:name', async (request, reply) => {
    const who = callerOf(request);
    const params = z.object({ namespace: dnsLabel, name: dnsLabel }).safeParse(request.params);
    if (!params.success) return reply.code(400).send({ error: 'namespace and name must be DNS labels' });
    const { namespace, name } = params.data;
    if (who.namespace !== namespace) {
      return reply.code(403).send({ error: `${who.username} may read approvals of ${who.namespace} only` });
    }
    const wait = z.coerce
      .number()
      .min(0)
      .max(maxWaitSeconds)
      .default(0)
      .safeParse((request.query as { wait?: string }).wait);
    if (!wait.success) return reply.code(400).send({ error: `wait is 0 to ${maxWaitSeconds} seconds` });
    const deadline = performance.now() + wait.data * 1000;
    const first = await read(namespace, name);
    const stored =
      first === undefined
        ? undefined
        : await awaitDecision(who, await expireIfDue(first), deadline, () => request.raw.destroyed);
    if (request.raw.destroyed) return reply;
    if (stored === undefined) return reply.code(404).send({ error: missingApprovalError(namespace, name) });
    return view(stored, ruleOf(stored));
  });

  app.post('/v1/approvals/:namespace/:name/use', async (request, reply) => {
    const who = callerOf(request);
    const params = z.object({ namespace: dnsLabel, name: dnsLabel }).safeParse(request.params);
    const body = useApprovalSchema.safeParse(request.body);
    if (!params.success || !body.success) return reply.code(400).send({ error: 'invalid use request' });
    const { namespace, name } = params.data;
    if (who.namespace !== namespace) {
      return reply.code(403).send({ error: `${who.username} may use approvals of ${who.namespace} only` });
    }
    let stored = await read(namespace, name);
    if (stored === undefined) return reply.code(404).send({ error: missingApprovalError(namespace, name) });
    stored = await expireIfDue(stored);
    const check = checkUse(name, stored, body.data, now());
    if (!check.ok) return refuseUse(reply, stored, check);
    const current = await ruleNow(stored);
    if (current.kind === 'unknown') {
      options.log.warn('approval use deferred: no valid version of its policy known here now', {
        namespace,
        name,
        policy: stored.spec.policy,
      });
      return reply.code(503).send({
        error: `the controller cannot check approval ${name} against EmbeddingPolicy ${stored.spec.policy} now; retry`,
      });
    }
    const ruleChanged = ruleChangeRefusal(name, stored.spec, current.rule);
    if (ruleChanged !== undefined) {
      options.log.info('approval use refused: rule changed', { namespace, name, rule: stored.spec.rule });
      return refuseUse(reply, stored, ruleChanged);
    }
    if (check.markUsed) {
      try {
        // The resourceVersion test makes two concurrent uses race for one success.
        stored = await patchStatus(stored, [
          { op: 'add', path: '/status/usedAt', value: now().toISOString() },
        ]);
      } catch (error) {
        options.log.warn('approval use not marked', { namespace, name, error: (error as Error).message });
        const current = await read(namespace, name).catch(() => undefined);
        return refuseUse(reply, current, markFailure(name, current, body.data, now()));
      }
    }
    return view(stored, ruleOf(stored));
  });

  /** The requester's approvals in the namespace still open to a decision. */
  async function pendingOf(namespace: string, requester: Requester): Promise<number> {
    const list = (await api.listNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace,
      plural,
      labelSelector: `${requesterLabelName}=${requesterLabel(requester)}`,
    })) as { items?: unknown[] };
    // The label alone could be any requester's that hashes alike.
    return (list.items ?? []).filter((item) => {
      const stored = readStored(item);
      return stored !== undefined && countsAsPending(stored, requester, now());
    }).length;
  }

  /** Creates the approval and its first status; one whose status cannot be written is deleted. */
  async function create(namespace: string, spec: ApprovalSpec): Promise<Stored> {
    const name = `ea-${randomBytes(6).toString('hex')}`;
    const object = await api.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace,
      plural,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'EmbeddingApproval',
        metadata: {
          name,
          namespace,
          labels: {
            'veil.dev/policy': spec.policy,
            'veil.dev/rule': spec.rule,
            [requesterLabelName]: requesterLabel(spec.requester),
          },
        },
        spec,
      },
    });
    try {
      return await patchStatus(toStored(object), [
        { op: 'add', path: '/status', value: { phase: 'Pending', decisions: [] } },
      ]);
    } catch (error) {
      // The sidecar is told to retry and opens another; failing this, the sweep expires it.
      await api
        .deleteNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural, name })
        .catch((deleteError) =>
          options.log.warn('approval without status not deleted', {
            namespace,
            name,
            error: (deleteError as Error).message,
          }),
        );
      throw error;
    }
  }

  /** The answer to a use refused, with the approval when the refusal says the sidecar may wait on. */
  function refuseUse(
    reply: FastifyReply,
    stored: Stored | undefined,
    refusal: { status: number; error: string; reason: string; withApproval: boolean },
  ) {
    return reply.code(refusal.status).send({
      error: refusal.error,
      reason: refusal.reason,
      ...(refusal.withApproval && stored ? { approval: view(stored, ruleOf(stored)) } : {}),
    });
  }

  /** The approval's rule in the valid version of its policy this replica holds; undefined without one. */
  function ruleOf(stored: Stored): ApprovalRule | undefined {
    const desired = options.policy(stored.metadata.namespace, stored.spec.policy);
    return desired === undefined ? undefined : ruleIn(desired, stored.spec.rule);
  }

  /**
   * The approval's rule as it stands, for a use. It is known to be gone only
   * when the valid version this replica holds lacks it, or the API server has
   * no such policy. A policy that exists without a valid version here (or that
   * cannot be read now) leaves it unknown: refusing the use as if the rule were
   * gone would depend on the replica asked.
   */
  async function ruleNow(stored: Stored): Promise<RuleNow> {
    const { namespace } = stored.metadata;
    if (!inSync()) return { kind: 'unknown' };
    const desired = options.policy(namespace, stored.spec.policy);
    if (desired !== undefined) return { kind: 'known', rule: ruleIn(desired, stored.spec.rule) };
    try {
      await api.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace,
        plural: policyPlural,
        name: stored.spec.policy,
      });
      return { kind: 'unknown' };
    } catch (error) {
      if ((error as { code?: number }).code === 404) return { kind: 'known', rule: undefined };
      options.log.warn('policy of an approval not read', {
        namespace,
        policy: stored.spec.policy,
        error: (error as Error).message,
      });
      return { kind: 'unknown' };
    }
  }

  /** One approval's turn in a sweep. */
  async function sweepOne(stored: Stored): Promise<SweepOutcome> {
    const after = await expire(stored, sweepExpiry(stored));
    if (after.status.phase === 'Expired' && stored.status.phase === 'Pending') return 'expired';
    return (await removeIfDue(after)) ? 'removed' : 'kept';
  }

  async function sweepNow(): Promise<SweepCounts> {
    const list = (await api.listCustomObjectForAllNamespaces({
      group: GROUP,
      version: VERSION,
      resourcePlural: plural,
    })) as {
      items?: unknown[];
    };
    const items = (list.items ?? []).flatMap((item) => readStored(item) ?? []);
    return sweepEach(items, sweepOne, (stored, error) =>
      options.log.warn('approval not swept', {
        namespace: stored.metadata.namespace,
        name: stored.metadata.name,
        error: (error as Error).message,
      }),
    );
  }

  const sweep = setInterval(() => {
    sweepNow().then(
      ({ expired, removed, failed }) => {
        if (expired > 0) options.log.info('approvals expired', { count: expired });
        if (removed > 0) options.log.info('settled approvals deleted', { count: removed });
        if (failed > 0) options.log.warn('approvals left for the next sweep', { count: failed });
      },
      (error) => options.log.warn('approval sweep failed', { error: (error as Error).message }),
    );
  }, options.expiryIntervalMs ?? 10_000);
  sweep.unref();

  let listener: HttpsListener;
  try {
    // Long polls hold connections: a short grace, then they are cut.
    listener = await listenHttps(app, {
      files: options.tls,
      initial,
      host: options.host,
      port: options.port ?? 8445,
      closeGraceMs: 1000,
      log: options.log,
    });
  } catch (error) {
    clearInterval(sweep);
    throw error;
  }
  return {
    url: listener.url,
    port: listener.port,
    sweepNow,
    close: async () => {
      clearInterval(sweep);
      await listener.close();
    },
  };
}

/** What a sweep did with one approval. */
export type SweepOutcome = 'expired' | 'removed' | 'kept';
export type SweepCounts = { expired: number; removed: number; failed: number };

/**
 * Gives each item its turn in order. One whose turn fails is reported and
 * counted, and the rest still get theirs: one approval the API server keeps
 * refusing must not hold back the expiry or deletion of every other.
 */
export async function sweepEach<T>(
  items: readonly T[],
  step: (item: T) => Promise<SweepOutcome>,
  failed: (item: T, error: unknown) => void,
): Promise<SweepCounts> {
  const counts: SweepCounts = { expired: 0, removed: 0, failed: 0 };
  for (const item of items) {
    try {
      const outcome = await step(item);
      if (outcome !== 'kept') counts[outcome]++;
    } catch (error) {
      counts.failed++;
      failed(item, error);
    }
  }
  return counts;
}

type Requester = Pick<ApprovalSpec['requester'], 'issuer' | 'subject'>;

/** An approval's rule now: known (undefined once gone), or unknown to this replica. */
type RuleNow = { kind: 'known'; rule: ApprovalRule | undefined } | { kind: 'unknown' };

/** `name` among the approval rules of a valid policy version. */
function ruleIn(desired: DesiredPolicy, name: string): ApprovalRule | undefined {
  const spec = policySpecSchema.safeParse(desired.spec);
  return spec.success ? spec.data.approvals.rules.find((r) => r.name === name) : undefined;
}

/** A caller the API serves: an injected pod, known by the token bound to it. */
type PodCaller = { username: string; namespace: string; pod: { name: string; uid: string } };

const unauthenticatedRoutes = new Set(['/healthz']);

/** A label value (hex, within the 63 characters allowed); a collision only lists more, never counts more. */
function requesterLabel(requester: Requester): string {
  return createHash('sha256')
    .update(JSON.stringify([requester.issuer, requester.subject]))
    .digest('hex')
    .slice(0, 40);
}

/**
 * A listed approval as stored; undefined for one that is not valid (never made
 * by this controller). A spec field a newer controller added is dropped.
 */
export function readStored(item: unknown): Stored | undefined {
  try {
    return toStored(item);
  } catch {
    return undefined;
  }
}

/**
 * Strictly, unlike the CLI: a spec field this controller does not know may be
 * a condition of the approval's use it cannot check, so such an approval is
 * refused, never used as if the field were not there.
 */
function toStored(object: unknown): Stored {
  const o = object as { metadata: Stored['metadata']; spec: unknown; status?: unknown };
  return {
    metadata: o.metadata,
    spec: approvalSpecSchema.parse(o.spec),
    status: approvalStatusSchema.parse(o.status ?? {}),
  };
}

function view(
  stored: Stored,
  rule: { holdTimeoutSeconds: number; mode: 'hold' | 'deferred' } | undefined,
): ApprovalView {
  const created = stored.metadata.creationTimestamp;
  return approvalView(
    {
      namespace: stored.metadata.namespace,
      name: stored.metadata.name,
      createdAt: created instanceof Date ? created.toISOString() : created,
      spec: stored.spec,
      status: stored.status,
    },
    rule,
  );
}

/**
 * Slack-compatible: counts, model and who asked; never inputs, not even the
 * masked summary. What Veil vouches for (the approval, its rule, counts,
 * approvers and expiry) comes first, what the caller chose after it, quoted
 * unless plain: a model named "bge-small (tei) for 12 inputs (480 bytes) under
 * rule small; ..." must not read as the counts of the request.
 */
export function notification(stored: Pick<Stored, 'metadata' | 'spec'>): Notification {
  const { namespace, name } = stored.metadata;
  const { request, requester, approvers, expiresAt, rule } = stored.spec;
  const text =
    `Embedding request held for approval: ${namespace}/${name}, under rule ${rule}: ` +
    `${request.inputCount} inputs (${request.bytes} bytes); needs ${approvers.count} approver(s) from ` +
    `${approvers.groups.join(', ')} before ${expiresAt}. Requested by ${callerText(requester.subject)} ` +
    `for model ${callerText(request.model)} over API ${callerText(request.api)}. ` +
    `Decide with: veil approvals approve ${namespace}/${name} --reason TEXT (or deny).`;
  return { text, blocks: [{ type: 'section', text: { type: 'mrkdwn', text } }] };
}

const maxCallerText = 200;

/**
 * A string the caller chose (its subject, the model it named, the API it says
 * it spoke), as text: quoted unless plain, so it cannot pass for what Veil
 * wrote around it; and since Slack reads `<!channel>` and `<https://…|label>`
 * in a message as a mention and a disguised link, `&`, `<` and `>` are
 * escaped, and a long one is cut.
 */
function callerText(value: string): string {
  if (isPlain(value) && value.length <= maxCallerText) return value;
  const cut = value.length > maxCallerText ? `${value.slice(0, maxCallerText)}…` : value;
  return JSON.stringify(cut).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/**
 * Posts each notification as JSON. The dispatcher is for endpoints behind a
 * private CA; by default the system's trusted CAs apply.
 */
export function httpsNotifier(
  dispatcher?: Dispatcher,
): (url: string, message: Notification) => Promise<void> {
  return async (url, message) => {
    const response = await request(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(message),
      signal: AbortSignal.timeout(10_000),
      ...(dispatcher === undefined ? {} : { dispatcher }),
    });
    await response.body.dump();
    if (response.statusCode < 200 || response.statusCode >= 300) {
      throw new Error(`the notification endpoint answered ${response.statusCode}`);
    }
  };
}

function outOfSync(namespace: string, policy: string): string {
  return `the controller's policy cache is not in sync with the API server, so EmbeddingPolicy ${namespace}/${policy} cannot be read now; retry`;
}
