// `GET /v1/policies/<namespace>/<name>` over HTTPS: where a starting sidecar, or
// one that missed a push, fetches the current valid version of its policy.
// A policy that does not exist is a 404 whose body says so (`status: absent`),
// on which the sidecar drops the policy it has: that answer is given only from
// a cache in sync with the API server. A policy that exists with no valid
// version here, or a cache that cannot vouch for an absence, is a 503: the
// sidecar keeps what it has and asks again.
// The caller authenticates with a service-account token (projected, with the
// audience below) that the API server vouches for through a TokenReview; a pod
// reads the policies of its own namespace only. Every replica answers, leader
// or not: each keeps the same informer cache.
//
// `POST /v1/certificates` on the same port certifies a sidecar's admin port: the
// token must be bound to a pod (a projected token carries the pod's name and UID,
// which the TokenReview returns), and that pod must be an injected pod of the
// token's namespace. The answer is a short-lived certificate for the public key
// sent, naming the pod's UID, from the CA the controller trusts pushes by.
import { createPublicKey, type KeyObject } from 'node:crypto';
import type { AuthenticationV1Api, V1Pod } from '@kubernetes/client-node';
import { sidecarPolicySpec } from '@veil/core';
import fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import { z } from 'zod';
import { listenHttps, tlsOptions } from '../certs/listening.ts';
import type { PodCertificateAuthority } from '../certs/podcerts.ts';
import { type CertificateFiles, readCertificatePair } from '../certs/reload.ts';
import { isCertifiableKey } from '../certs/x509.ts';
import { controllerTokenAudience } from '../webhook/sidecar.ts';
import type { DesiredPolicy } from './distributor.ts';
import type { Log } from './log.ts';

/** The audience a pull token must carry: the one the injector projects each sidecar a token for. */
export const pullAudience = controllerTokenAudience;

export type Caller = {
  username: string;
  namespace: string;
  /** The pod a projected token is bound to, as the API server says. */
  pod?: { name: string; uid: string };
};

export type PullServerOptions = {
  tls: CertificateFiles;
  /** Defaults to every interface. */
  host?: string;
  /** Defaults to 8444; 0 picks a free port. */
  port?: number;
  /** The last valid version of a policy, or why there is none. */
  lookup(namespace: string, name: string): Promise<PolicyLookup>;
  /** Who presented `token`, or undefined when nobody the cluster knows. */
  authenticate(token: string): Promise<Caller | undefined>;
  /** Admin-port certificates for injected pods; without it there is no `/v1/certificates`. */
  certificates?: {
    authority: PodCertificateAuthority;
    /** An injected pod from the informer cache; undefined when there is none of that name. */
    injectedPod(namespace: string, name: string): V1Pod | undefined;
  };
  log: Log;
};

export type PolicyLookup =
  | { kind: 'valid'; policy: DesiredPolicy }
  /** Not in a cache that has listed every policy of the namespace and missed no event since. */
  | { kind: 'absent' }
  /** It exists without a valid version here, or its absence cannot be vouched for now. */
  | { kind: 'unavailable'; reason: string };

/** The `status` of the 404 body that tells a sidecar its policy does not exist. */
export const absentStatus = 'absent';

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

const certificateRequestSchema = z.object({ publicKey: z.string().min(1).max(4096) });

export async function startPullServer(options: PullServerOptions): Promise<PullServer> {
  const initial = await readCertificatePair(options.tls);
  const app = fastify({ https: { ...tlsOptions, ...initial }, logger: false });

  /** The caller, or undefined once the reply is sent. */
  async function authenticate(request: FastifyRequest, reply: FastifyReply): Promise<Caller | undefined> {
    const token = /^Bearer (.+)$/i.exec(request.headers.authorization ?? '')?.[1];
    let caller: Caller | undefined;
    try {
      caller = token ? await options.authenticate(token) : undefined;
    } catch (error) {
      // Fail closed: no answer without a verdict from the API server.
      options.log.warn('token review failed', { error: (error as Error).message });
      await reply.code(503).send({ error: 'cannot verify the token now; retry' });
      return undefined;
    }
    if (caller === undefined) await reply.code(401).send({ error: 'a service-account token is required' });
    return caller;
  }

  app.get('/healthz', async () => 'ok');
  app.get('/v1/policies/:namespace/:name', async (request, reply) => {
    const params = paramsSchema.safeParse(request.params);
    if (!params.success) return reply.code(400).send({ error: 'namespace and name must be DNS labels' });
    const { namespace, name } = params.data;
    const caller = await authenticate(request, reply);
    if (caller === undefined) return reply;
    if (caller.namespace !== namespace) {
      options.log.warn('pull refused', { caller: caller.username, namespace, name });
      return reply
        .code(403)
        .send({ error: `${caller.username} may read policies of ${caller.namespace} only` });
    }
    const found = await options.lookup(namespace, name);
    switch (found.kind) {
      case 'absent':
        return reply
          .code(404)
          .send({ status: absentStatus, error: `EmbeddingPolicy ${namespace}/${name} does not exist` });
      case 'unavailable':
        return reply.code(503).send({ error: `${found.reason}; retry` });
      case 'valid': {
        const { policy } = found;
        return { name: policy.name, hash: policy.hash, spec: sidecarPolicySpec(policy.spec) };
      }
    }
  });

  const certificates = options.certificates;
  if (certificates !== undefined) {
    app.post('/v1/certificates', async (request, reply) => {
      const body = certificateRequestSchema.safeParse(request.body);
      const publicKey = body.success ? parsePublicKey(body.data.publicKey) : undefined;
      if (publicKey === undefined)
        return reply
          .code(400)
          .send({ error: 'the body must be {"publicKey": "<SPKI PEM of a P-256 or Ed25519 public key>"}' });
      const caller = await authenticate(request, reply);
      if (caller === undefined) return reply;
      if (caller.pod === undefined)
        return reply
          .code(403)
          .send({ error: `${caller.username}: the token is not bound to a pod (use its projected token)` });
      // The injected pod of that name must be the one the token is bound to, not an earlier pod of the name.
      const pod = certificates.injectedPod(caller.namespace, caller.pod.name);
      if (pod?.metadata?.uid !== caller.pod.uid) {
        options.log.warn('certificate refused', {
          caller: caller.username,
          pod: `${caller.namespace}/${caller.pod.name}`,
          uid: caller.pod.uid,
        });
        return reply.code(403).send({
          error: `pod ${caller.namespace}/${caller.pod.name} is not an injected pod the controller knows`,
        });
      }
      const issued = certificates.authority.issue(publicKey, caller.pod.uid);
      return {
        certificate: issued.cert,
        ca: certificates.authority.caCert,
        notAfter: issued.notAfter.toISOString(),
      };
    });
  }

  const listener = await listenHttps(app, {
    files: options.tls,
    initial,
    host: options.host,
    port: options.port ?? 8444,
    closeGraceMs: 5000,
    log: options.log,
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
    if (namespace === undefined) return undefined;
    const extra = review.status.user?.extra ?? {};
    const name = extra[podNameExtra];
    const uid = extra[podUidExtra];
    return name?.length === 1 && uid?.length === 1 && name[0] && uid[0]
      ? { username, namespace, pod: { name: name[0], uid: uid[0] } }
      : { username, namespace };
  };
}

// What the API server adds to a TokenReview's user for a token bound to a pod.
const podNameExtra = 'authentication.kubernetes.io/pod-name';
const podUidExtra = 'authentication.kubernetes.io/pod-uid';

/** A P-256 or Ed25519 public key from SPKI PEM; undefined for anything else, private keys included. */
function parsePublicKey(pem: string): KeyObject | undefined {
  if (!pem.trimStart().startsWith('-----BEGIN PUBLIC KEY-----')) return undefined;
  try {
    const key = createPublicKey({ key: pem, format: 'pem' });
    return isCertifiableKey(key) ? key : undefined;
  } catch {
    return undefined;
  }
}
