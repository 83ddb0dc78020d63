// `GET /v1/policies/<namespace>/<name>` over HTTPS: where a starting sidecar, or
// one that missed a push, fetches the current valid version of its policy.
// The caller authenticates with a service-account token (projected, with the
// audience below) that the API server vouches for through a TokenReview; a pod
// reads the policies of its own namespace only. Every replica answers, leader
// or not: each keeps the same informer cache.
import type { AuthenticationV1Api } from '@kubernetes/client-node';
import { sidecarPolicySpec } from '@veil/core';
import fastify from 'fastify';
import { z } from 'zod';
import { listenHttps, tlsOptions } from '../certs/listening.ts';
import { type CertificateFiles, readCertificatePair } from '../certs/reload.ts';
import { controllerTokenAudience } from '../webhook/sidecar.ts';
import type { DesiredPolicy } from './distributor.ts';
import type { Log } from './log.ts';

/** The audience a pull token must carry: the one the injector projects each sidecar a token for. */
export const pullAudience = controllerTokenAudience;

export type Caller = { username: string; namespace: string };

export type PullServerOptions = {
  tls: CertificateFiles;
  /** Defaults to every interface. */
  host?: string;
  /** Defaults to 8444; 0 picks a free port. */
  port?: number;
  /** The last valid version of a policy, or undefined when there is none. */
  policy(namespace: string, name: string): DesiredPolicy | undefined;
  /** Who presented `token`, or undefined when nobody the cluster knows. */
  authenticate(token: string): Promise<Caller | undefined>;
  log: Log;
};

export type PullServer = { url: string; port: number; close(): Promise<void> };

const paramsSchema = z.object({
  namespace: z
    .string()
    .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/)
    .max(63),
  name: z
    .string()
    .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/)
    .max(63),
});

export async function startPullServer(options: PullServerOptions): Promise<PullServer> {
  const initial = await readCertificatePair(options.tls);
  const app = fastify({ https: { ...tlsOptions, ...initial }, logger: false });

  app.get('/healthz', async () => 'ok');
  app.get('/v1/policies/:namespace/:name', async (request, reply) => {
    const params = paramsSchema.safeParse(request.params);
    if (!params.success) return reply.code(400).send({ error: 'namespace and name must be DNS labels' });
    const { namespace, name } = params.data;
    const token = /^Bearer (.+)$/i.exec(request.headers.authorization ?? '')?.[1];
    let caller: Caller | undefined;
    try {
      caller = token ? await options.authenticate(token) : undefined;
    } catch (error) {
      // Fail closed: no answer without a verdict from the API server.
      options.log.warn('token review failed', { error: (error as Error).message });
      return reply.code(503).send({ error: 'cannot verify the token now; retry' });
    }
    if (caller === undefined) return reply.code(401).send({ error: 'a service-account token is required' });
    if (caller.namespace !== namespace) {
      options.log.warn('pull refused', { caller: caller.username, namespace, name });
      return reply
        .code(403)
        .send({ error: `${caller.username} may read policies of ${caller.namespace} only` });
    }
    const policy = options.policy(namespace, name);
    if (policy === undefined)
      return reply.code(404).send({ error: `no valid EmbeddingPolicy ${namespace}/${name}` });
    return { name: policy.name, hash: policy.hash, spec: sidecarPolicySpec(policy.spec) };
  });

  const listener = await listenHttps(app, {
    files: options.tls,
    initial,
    host: options.host,
    port: options.port ?? 8444,
    closeGraceMs: 5000,
  });
  return { url: listener.url, port: listener.port, close: () => listener.close() };
}

const serviceAccountUser = /^system:serviceaccount:([a-z0-9]([-a-z0-9]*[a-z0-9])?):[^:]+$/;

/** Asks the API server who a token belongs to; only service accounts are callers here. */
export function tokenReviewAuthenticator(
  api: AuthenticationV1Api,
  audiences: string[] = [pullAudience],
): (token: string) => Promise<Caller | undefined> {
  return async (token) => {
    const review = await api.createTokenReview({ body: { spec: { token, audiences } } });
    const username = review.status?.user?.username;
    if (!review.status?.authenticated || username === undefined) return undefined;
    const namespace = serviceAccountUser.exec(username)?.[1];
    return namespace === undefined ? undefined : { username, namespace };
  };
}
