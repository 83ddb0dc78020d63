// The admission webhooks over HTTPS: `POST /mutate-pods` (pod injection, and the
// guards on injected pods) and `POST /mutate-approvals` (approval identity
// stamping) for AdmissionReviews, `GET /healthz` for probes. Certificates are
// reloaded from disk as they rotate.
import fastify, { type RouteShorthandOptions } from 'fastify';
import { type HttpsListener, listenHttps, tlsOptions } from '../certs/listening.ts';
import { type CertificateFiles, readCertificatePair } from '../certs/reload.ts';
import { type Log, silentLog } from '../controller/log.ts';
import { type ApprovalStampSettings, reviewApprovalAdmission } from './approvals.ts';
import { admissionReviewRequestSchema, type ReviewDependencies, reviewPodAdmission } from './review.ts';
import { type InjectionSettingsInput, injectionSettingsSchema } from './settings.ts';

export type WebhookServerOptions = Omit<ReviewDependencies, 'settings'> & {
  settings: InjectionSettingsInput;
  tls: CertificateFiles;
  /** Defaults to every interface. */
  host?: string;
  /** Defaults to 8443; 0 picks a free port. */
  port?: number;
  /** Reviews and certificate reloads; silent by default. */
  log?: Log;
  /** Approval stamping: the controller's usernames; none by default. */
  approvals?: ApprovalStampSettings;
  /** The clock decisions are stamped with; defaults to the system clock. */
  now?: () => Date;
  /**
   * Sees how long each pod review took in the server, in ms: from its request's
   * headers being read to its answer being sent (what controller-runtime's
   * webhook latency metric measures). The bench times the webhook with it.
   */
  observeReview?: (ms: number) => void;
};

export type WebhookServer = HttpsListener;

// An AdmissionReview holds the pod and, for updates, its previous version.
const bodyLimit = 8 * 1024 * 1024;

export async function startWebhookServer(options: WebhookServerOptions): Promise<WebhookServer> {
  const deps: ReviewDependencies = {
    settings: injectionSettingsSchema.parse(options.settings),
    namespaceLabels: options.namespaceLabels,
    bootstrapPolicy: options.bootstrapPolicy,
    watchedNamespaces: options.watchedNamespaces,
    readPod: options.readPod,
    controllerTrust: options.controllerTrust,
    trustWriters: options.trustWriters,
  };
  const log = options.log ?? silentLog;
  const initial = await readCertificatePair(options.tls);
  const app = fastify({ https: { ...tlsOptions, ...initial }, logger: false, bodyLimit });

  app.get('/healthz', async () => 'ok');
  const { observeReview } = options;
  const timing: RouteShorthandOptions = observeReview
    ? { onResponse: async (_request, reply) => observeReview(reply.elapsedTime) }
    : {};
  app.post('/mutate-pods', timing, async (request, reply) => {
    const parsed = admissionReviewRequestSchema.safeParse(request.body);
    if (!parsed.success) {
      return reply.code(400).send({ error: 'not an admission.k8s.io/v1 AdmissionReview request' });
    }
    const result = await reviewPodAdmission(parsed.data, deps);
    const { namespace, name, operation, uid } = parsed.data.request;
    // Never the pod itself: its env may hold secrets.
    log.info('review', { uid, operation, namespace, name, outcome: result.outcome, detail: result.detail });
    return result.review;
  });

  const approvalSettings: ApprovalStampSettings = options.approvals ?? { controllerUsernames: [] };
  const now = options.now ?? (() => new Date());
  app.post('/mutate-approvals', async (request, reply) => {
    const parsed = admissionReviewRequestSchema.safeParse(request.body);
    if (!parsed.success) {
      return reply.code(400).send({ error: 'not an admission.k8s.io/v1 AdmissionReview request' });
    }
    const result = reviewApprovalAdmission(parsed.data.request, approvalSettings, now());
    const { namespace, name, uid, subResource, userInfo } = parsed.data.request;
    log.info('approval review', {
      uid,
      namespace,
      name,
      subResource,
      user: userInfo.username,
      outcome: result.outcome,
      detail: result.detail,
    });
    return result.review;
  });

  return listenHttps(app, {
    files: options.tls,
    initial,
    host: options.host,
    port: options.port ?? 8443,
    closeGraceMs: 3000,
    log,
  });
}
