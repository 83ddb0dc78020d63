// Who calls the approvals API. The sidecar presents its pod's projected
// service-account token (audience `veil-controller`, as for policy pulls) and
// the API server vouches for it through a TokenReview. Only an injected pod may
// call: the token must be bound to a pod (the TokenReview names it and its
// UID), and that pod, read from the API server, must carry the injected label
// and the same UID. Every route but /healthz is checked, by the route it
// matched, before its body is read.
import type { CoreV1Api } from '@kubernetes/client-node';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { veilLabels } from '../../webhook/annotations.ts';
import type { Log } from '../log.ts';
import type { Caller } from '../pull.ts';

/** A caller the API serves: an injected pod, known by the token bound to it. */
export type PodCaller = { username: string; namespace: string; pod: { name: string; uid: string } };

export type PodCallersOptions = {
  core: CoreV1Api;
  authenticate(token: string): Promise<Caller | undefined>;
  log: Log;
};

const unauthenticatedRoutes = new Set(['/healthz']);

export class PodCallers {
  readonly #options: PodCallersOptions;
  readonly #callers = new WeakMap<FastifyRequest, PodCaller>();

  constructor(options: PodCallersOptions) {
    this.#options = options;
  }

  /** Checks the caller of every route added to `app` from now on, but those left unauthenticated. */
  guard(app: FastifyInstance): void {
    // By the route matched, not the raw URL: the router decodes the path
    // (`/%761/approvals` is `/v1/approvals`), a prefix test on the URL does not.
    // Every route added after this hook is checked unless named here.
    app.addHook('onRoute', (route) => {
      if (unauthenticatedRoutes.has(route.url)) return;
      route.onRequest = [this.#authenticatePod, ...[route.onRequest ?? []].flat()];
    });
  }

  /** The injected pod that calls, as the guard found it. */
  of(request: FastifyRequest): PodCaller {
    const who = this.#callers.get(request);
    if (who === undefined) throw new Error(`${request.routeOptions.url} ran without its caller check`);
    return who;
  }

  /** Lets an injected pod's bound token through; answers anything else (401, 403, or 503 when it cannot tell). */
  readonly #authenticatePod = async (
    request: FastifyRequest,
    reply: FastifyReply,
  ): Promise<FastifyReply | undefined> => {
    const { log } = this.#options;
    const token = /^Bearer (.+)$/i.exec(request.headers.authorization ?? '')?.[1];
    let who: Caller | undefined;
    let injected = false;
    try {
      who = token ? await this.#options.authenticate(token) : undefined;
      injected = who?.pod !== undefined && (await this.#isInjectedPod(who.namespace, who.pod));
    } catch (error) {
      // Fail closed: no answer without a verdict from the API server.
      log.warn('approvals caller not verified', { error: (error as Error).message });
      return reply.code(503).send({ error: 'cannot verify the caller now; retry' });
    }
    if (who === undefined) return reply.code(401).send({ error: 'a service-account token is required' });
    if (who.pod === undefined || !injected) {
      log.warn('approvals caller refused', { caller: who.username, pod: who.pod?.name });
      return reply.code(403).send({
        error:
          who.pod === undefined
            ? `${who.username}: the token is not bound to a pod (use its projected token)`
            : `pod ${who.namespace}/${who.pod.name} is not an injected pod`,
      });
    }
    this.#callers.set(request, { username: who.username, namespace: who.namespace, pod: who.pod });
    return undefined;
  };

  /** Whether the pod a token is bound to is, as the API server has it now, an injected pod of that UID. */
  async #isInjectedPod(namespace: string, pod: { name: string; uid: string }): Promise<boolean> {
    try {
      const stored = await this.#options.core.readNamespacedPod({ namespace, name: pod.name });
      return stored.metadata?.uid === pod.uid && stored.metadata?.labels?.[veilLabels.injected] === 'true';
    } catch (error) {
      if ((error as { code?: number }).code === 404) return false;
      throw error;
    }
  }
}
