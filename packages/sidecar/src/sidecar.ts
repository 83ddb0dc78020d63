import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { type AdminCertificate, startAdminCertificate } from './admin/certificate.ts';
import { type ApprovalsClient, controllerApprovalsClient } from './approvals/client.ts';
import { RecordedDecisions } from './approvals/evidence.ts';
import { ApprovalFollower, FOLLOW_FILE, type FollowerOptions } from './approvals/follow.ts';
import { HeldRequests } from './approvals/hold.ts';
import { openAuditRecorder } from './audit/setup.ts';
import type { AuditSink } from './audit/sink.ts';
import type { SidecarConfig } from './config.ts';
import { loadHashKey } from './hashkey.ts';
import { type PolicyPuller, type PullOutcome, startPolicyPull } from './policy/pull.ts';
import type { PolicyStore } from './policy/store.ts';
import { PolicyStore as Store } from './policy/store.ts';
import { BodyBudget, defaultBodyMemoryBytes, heldBodyShare } from './proxy/body-budget.ts';
import { InFlight } from './proxy/in-flight.ts';
import type { PipelineDeps } from './proxy/pipeline.ts';
import { buildAdminServer, buildDataServer } from './server.ts';
import { createTelemetry, registerPolicyGauges } from './telemetry.ts';
import { Upstream } from './upstream.ts';

/**
 * On close, how long requests in flight, and their model calls, may take to
 * finish (held ones are answered at once). Short, so the audit recorder always
 * gets its own close grace within the pod's termination grace. A close takes
 * twice this at most before the recorder's turn: the drain, then as long again
 * for the requests whose model calls it cut off to be recorded.
 */
export const requestDrainMs = 2_000;

export interface RunningSidecar {
  readonly url: string;
  readonly adminUrl: string;
  readonly store: PolicyStore;
  readonly sink: AuditSink;
  /** Where the policy in force at start came from. */
  readonly loaded: 'last-good' | 'bootstrap' | 'none' | 'revoked';
  /** Whether hash tokens and input digests use the workload's shared key rather than one of this process. */
  readonly sharedHashKey: boolean;
  /** The start-up pull from the controller; undefined without a controller URL and token. */
  readonly pull: Promise<PullOutcome> | undefined;
  /**
   * True once the admin port holds a certificate from the controller (pushes
   * need one), false if closed before; undefined when this sidecar takes no
   * pushes or knows no controller to ask.
   */
  readonly adminCertificate: Promise<boolean> | undefined;
  close(): Promise<void>;
}

export interface SidecarOptions {
  /** Overrides the audit sink (the default spools and ships evidence to S3, or to auditDir). */
  readonly sink?: AuditSink;
  /** Options for the caller authenticator (custom CA, clock), mostly for tests. */
  readonly authOptions?: ConstructorParameters<typeof Store>[0]['authOptions'];
  /** Backoff of the start-up pull's retries, and of the admin certificate's (tests make it short). */
  readonly pullBackoff?: { baseMs: number; capMs: number };
  /** Where the sidecar reports what it does in the background; stderr by default. */
  readonly log?: (message: string) => void;
  /**
   * Holds requests with this instead of the controller's approvals API (`veil dev`
   * keeps approvals in its own process). The sidecar closes it on close.
   */
  readonly approvals?: ApprovalsClient;
  /** How the approvals this sidecar opens are followed (tests ask often, or cap low); false follows none. */
  readonly follow?: Pick<FollowerOptions, 'pollMs' | 'maxFollowed'> | false;
  /** The clock of the policy gauges' change time, in ms since the epoch (tests set it). */
  readonly now?: () => number;
}

/**
 * Starts one sidecar: loads the last good or bootstrap policy, then opens the
 * data and admin ports. Without a valid policy it still starts, answering 503
 * until a push or the start-up pull brings one. The pull runs in the background:
 * whatever was loaded serves meanwhile.
 */
export async function startSidecar(
  config: SidecarConfig,
  options: SidecarOptions = {},
): Promise<RunningSidecar> {
  const log = options.log ?? ((message: string) => console.error(`veil-sidecar: ${message}`));
  const hashKey = await loadHashKey(config.hashKeyFile, log);
  // What a failed start opened is closed again, in reverse order: above all the
  // audit stream, whose genesis is already on its way to the store.
  const undo: (() => unknown)[] = [];
  try {
    const store = new Store({
      hashKey: hashKey.key,
      stateDir: config.stateDir,
      authOptions: options.authOptions,
      log,
    });
    undo.push(() => store.close());
    const loaded = await store.load(config.bootstrapPolicyFile);
    const telemetry = await createTelemetry(log);
    const dropHashKeyGauge = telemetry.gauge(
      'veil_shared_hash_key',
      "1 when hash tokens and input digests use the workload's shared key; 0 when they use a key of this process only, which matches no other pod's",
      () => (hashKey.shared ? 1 : 0),
    );
    undo.push(dropHashKeyGauge);
    const dropPolicyGauges = registerPolicyGauges(telemetry, store, options.now);
    undo.push(dropPolicyGauges);
    const { recorder: sink, dropGauges: dropAuditGauges } = options.sink
      ? { recorder: options.sink, dropGauges: () => undefined }
      : await openAuditRecorder(config, { telemetry, policy: () => store.current() });
    undo.push(() => sink.close(), dropAuditGauges);
    const upstream = new Upstream({ url: config.upstream, timeoutMs: config.upstreamTimeoutMs });
    undo.push(() => upstream.close());
    // Both or nothing: without a token the controller would refuse every call anyway.
    const approvals: ApprovalsClient | undefined =
      options.approvals ??
      (config.approvalsUrl && config.controllerTokenFile
        ? await controllerApprovalsClient({
            url: config.approvalsUrl,
            tokenFile: config.controllerTokenFile,
            caFile: config.controllerCaFile,
          })
        : undefined);
    undo.push(() => approvals?.close());
    const approvalDecisions = new RecordedDecisions();
    // Every approval this sidecar opens is followed to its end, whoever waits on it.
    const follower =
      approvals === undefined || options.follow === false
        ? undefined
        : await ApprovalFollower.start({
            ...options.follow,
            client: approvals,
            sink,
            decisions: approvalDecisions,
            stateFile: config.stateDir ? join(config.stateDir, FOLLOW_FILE) : undefined,
            log,
          });
    undo.push(() => follower?.close());
    const bodyBudget = new BodyBudget(config.bodyMemoryBytes ?? defaultBodyMemoryBytes);
    const dropBodyGauge = telemetry.gauge(
      'veil_request_body_bytes',
      'Bytes of request bodies held now by requests not yet answered; past bodyMemoryBytes, new requests get 503',
      () => bodyBudget.usedBytes,
    );
    undo.push(dropBodyGauge);
    const stopping = new AbortController();
    const deps: PipelineDeps = {
      policy: () => store.current(),
      upstream,
      sink: follower ? follower.watch(sink) : sink,
      telemetry,
      defaultModel: config.defaultModel,
      hashKey,
      approvals,
      podName: config.pod.name,
      approvalDecisions,
      heldRequests: new HeldRequests(heldBodyShare(bodyBudget.capacityBytes)),
      bodyBudget,
      stopping: stopping.signal,
      inFlight: new InFlight(),
    };
    const data = await buildDataServer(deps, config.api, telemetry, config);
    undo.push(() => data.close());
    // Pushes are verified with the controller's key and arrive over TLS, with a
    // certificate the controller issues to this pod on request.
    let certificate: AdminCertificate | undefined;
    if (config.controllerKeyFile && config.controllerUrl && config.controllerTokenFile) {
      certificate = startAdminCertificate({
        url: config.controllerUrl,
        tokenFile: config.controllerTokenFile,
        caFile: config.controllerCaFile,
        controllerKeyFile: config.controllerKeyFile,
        backoff: options.pullBackoff,
        log,
      });
      undo.push(() => certificate?.close());
    } else if (config.controllerKeyFile) {
      log(
        'pushes need a certificate from the controller, and no controller URL and token are set: none will be accepted',
      );
    }
    const admin = await buildAdminServer(
      {
        store,
        podUid: config.pod.uid,
        policyName: config.policyName,
        controllerKeyFile: config.controllerKeyFile,
        log,
      },
      telemetry,
      {
        accepting: () => sink.accepting(),
        failed: () => sink.failed?.() ?? false,
        stopping: stopping.signal,
      },
      () => certificate?.context(),
    );
    undo.push(() => admin.close());
    const url = await data.listen({ host: config.host, port: config.proxyPort });
    const adminUrl = await admin.listen({ host: config.adminHost, port: config.adminPort });
    // Started once the admin port listens, so a push that arrives meanwhile supersedes it.
    const puller: PolicyPuller | undefined =
      config.controllerUrl && config.controllerTokenFile
        ? startPolicyPull({
            url: config.controllerUrl,
            tokenFile: config.controllerTokenFile,
            caFile: config.controllerCaFile,
            namespace: config.pod.namespace,
            policyName: config.policyName,
            store,
            backoff: options.pullBackoff,
            log,
          })
        : undefined;
    return {
      url,
      adminUrl,
      store,
      sink,
      loaded,
      sharedHashKey: hashKey.shared,
      pull: puller?.done,
      adminCertificate: certificate?.ready,
      async close() {
        stopping.abort();
        dropHashKeyGauge();
        dropBodyGauge();
        dropAuditGauges();
        dropPolicyGauges();
        await puller?.close();
        await certificate?.close();
        await drain(data, deps.inFlight, upstream, log);
        await follower?.close();
        await admin.close();
        await sink.close();
        await approvals?.close();
        await store.close();
      },
    };
  } catch (error) {
    await closeAll(undo.reverse());
    throw error;
  }
}

/**
 * Lets requests in flight, and the model calls they made, finish within the
 * drain, then cuts the calls still under way off. A call's caller may be gone
 * already: its request then no longer holds the data port's close open, and
 * only the drain bounds its call. Model calls are let go on only once the
 * requests are done, so a request already in flight can still make its own.
 */
async function drain(
  data: FastifyInstance,
  inFlight: InFlight,
  upstream: Upstream,
  log: (message: string) => void,
): Promise<void> {
  const until = performance.now() + requestDrainMs;
  const drained = Promise.all([data.close(), inFlight.idle()]);
  const inTime =
    (await settlesWithin(drained, requestDrainMs)) &&
    (await settlesWithin(upstream.close(), until - performance.now()));
  if (inTime) return;
  // Their records then say so (upstream_error), while the sink still takes them.
  log(`stopping: model calls still under way after ${requestDrainMs} ms are cut off`);
  await upstream.destroy();
  await settlesWithin(drained, requestDrainMs);
}

/** Runs every closer in turn, whatever any of them throws. */
async function closeAll(closers: readonly (() => unknown)[]): Promise<void> {
  for (const close of closers) {
    try {
      await close();
    } catch {
      // The error that failed the start is the one to report.
    }
  }
}

/** Whether `promise` settles (either way) within `ms`. */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([
      promise.then(
        () => true,
        () => true,
      ),
      late,
    ]);
  } finally {
    clearTimeout(timer);
  }
}
