// The approvals API sidecars call when a request is held, over HTTPS:
//   POST /v1/approvals                         open: creates the EmbeddingApproval
//   GET  /v1/approvals/<ns>/<name>?wait=S      the decision, long-polled up to S seconds
//   POST /v1/approvals/<ns>/<name>/use         consume it for one requester and payload
// plus a sweep that marks Pending approvals Expired once stale or once their rule
// changed, and deletes settled ones kept their time past expiry, and a
// Slack-compatible notification for each new one.
//
// Only an injected pod may call, known by the projected token bound to it
// (approvals/pod-callers.ts). An approval is opened for the pod the token
// names, never one the body names. It is read and used by any injected pod of
// its namespace, not only the one that opened it: a retry after a restart comes
// from another pod of the Deployment. What a caller cannot do is approve
// (approvals/use.ts).
//
// This file wires the parts in approvals/: the store (Kubernetes I/O), the pod
// callers, the rules approvals hold under, the long polls, the sweep, the
// notification, and one file a route.
import { CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import fastify from 'fastify';
import { type HttpsListener, listenHttps, tlsOptions } from '../certs/listening.ts';
import { type CertificateFiles, readCertificatePair } from '../certs/reload.ts';
import { LongPolls } from './approvals/long-polls.ts';
import { httpsNotifier, type Notification } from './approvals/notification.ts';
import { registerOpenRoute } from './approvals/open.ts';
import { PodCallers } from './approvals/pod-callers.ts';
import { registerReadRoute } from './approvals/read.ts';
import { ApprovalRules } from './approvals/rules.ts';
import { ApprovalStore } from './approvals/store.ts';
import { ApprovalSweep, type SweepCounts, sweepEvery } from './approvals/sweep.ts';
import { registerUseRoute } from './approvals/use.ts';
import type { DesiredPolicy } from './distributor.ts';
import type { Log } from './log.ts';
import type { Caller } from './pull.ts';

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

export async function startApprovalsApi(options: ApprovalsApiOptions): Promise<ApprovalsApi> {
  const api = options.kubeConfig.makeApiClient(CustomObjectsApi);
  const now = options.now ?? (() => new Date());
  const notify = options.notify ?? httpsNotifier();
  const inSync = options.policiesInSync ?? (() => true);
  const policy = (namespace: string, name: string) => options.policy(namespace, name);
  const { log } = options;
  const initial = await readCertificatePair(options.tls);
  const app = fastify({ https: { ...tlsOptions, ...initial }, logger: false });

  const store = new ApprovalStore({ api, now, log });
  const rules = new ApprovalRules({ api, policy, inSync, log });
  const longPolls = new LongPolls({ store, now, maxPerPod: options.maxLongPollsPerPod });
  const callers = new PodCallers({
    core: options.kubeConfig.makeApiClient(CoreV1Api),
    authenticate: (token) => options.authenticate(token),
    log,
  });

  callers.guard(app);
  app.get('/healthz', async () => 'ok');
  registerOpenRoute(app, { callers, store, policy, inSync, now, notify, log });
  registerReadRoute(app, { callers, store, longPolls, rules, now });
  registerUseRoute(app, { callers, store, rules, now, log });

  const sweep = new ApprovalSweep({ store, now, policy, inSync, keepForMs: options.keepForMs, log });
  const stopSweeping = sweepEvery(sweep, options.expiryIntervalMs ?? 10_000, log);

  let listener: HttpsListener;
  try {
    // Long polls hold connections: a short grace, then they are cut.
    listener = await listenHttps(app, {
      files: options.tls,
      initial,
      host: options.host,
      port: options.port ?? 8445,
      closeGraceMs: 1000,
      log,
    });
  } catch (error) {
    stopSweeping();
    throw error;
  }
  return {
    url: listener.url,
    port: listener.port,
    sweepNow: () => sweep.sweepNow(),
    close: async () => {
      stopSweeping();
      await listener.close();
    },
  };
}
