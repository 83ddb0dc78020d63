import { readFile } from 'node:fs/promises';
import type { FastifyInstance } from 'fastify';
import { importJWK, type JWK, jwtVerify } from 'jose';
import { z } from 'zod';
import type { PolicyStore } from '../policy/store.ts';

export const CONTROLLER_ISSUER = 'veil-controller';

/** A push is for one pod: a token minted for another cannot be replayed here. */
export function sidecarAudience(podUid: string): string {
  return `veil-sidecar:${podUid}`;
}

type VerifyKey = Awaited<ReturnType<typeof importJWK>>;

const pushSchema = z.object({ name: z.string().min(1).max(253), spec: z.unknown() });

export interface PolicyRoutesOptions {
  readonly store: PolicyStore;
  readonly podUid: string;
  /** The controller's public JWK; without it pushes are refused. */
  readonly controllerKeyFile: string | undefined;
}

/**
 * `PUT /v1/policy` takes a policy from the controller: ACK with the content
 * hash, or NACK (422) with the reason while the last good policy stays.
 */
export async function policyRoutes(app: FastifyInstance, options: PolicyRoutesOptions): Promise<void> {
  const keyFile = options.controllerKeyFile;
  // Read once at start, so a sidecar whose key file is broken says so at once.
  const key = keyFile ? new ControllerKeyFile(keyFile) : undefined;
  await key?.current();

  app.get('/v1/policy', async (_request, reply) => {
    const policy = options.store.current();
    if (!policy) return reply.code(404).send({ error: 'no policy loaded' });
    return { name: policy.name, hash: policy.hash };
  });

  app.put('/v1/policy', async (request, reply) => {
    if (!key) return reply.code(403).send({ status: 'nack', reason: 'this sidecar accepts no pushes' });
    let trusted: VerifyKey;
    try {
      trusted = await key.current();
    } catch {
      // Unavailable, not refused: the controller tries again, and the file may be back by then.
      return reply.code(503).send({ status: 'nack', reason: "the controller's key file cannot be read" });
    }
    const token = /^Bearer (.+)$/i.exec(request.headers.authorization ?? '')?.[1];
    try {
      if (!token) throw new Error('missing token');
      await jwtVerify(token, trusted, {
        issuer: CONTROLLER_ISSUER,
        audience: sidecarAudience(options.podUid),
        algorithms: ['EdDSA', 'ES256'],
        maxTokenAge: '5m',
        requiredClaims: ['exp', 'iat'],
      });
    } catch {
      return reply.code(401).send({ status: 'nack', reason: 'push not signed by the controller' });
    }
    const body = pushSchema.safeParse(request.body);
    if (!body.success) return reply.code(400).send({ status: 'nack', reason: 'body must be {name, spec}' });
    const result = await options.store.apply(body.data.name, body.data.spec);
    if (!result.ok) return reply.code(422).send({ status: 'nack', reason: result.reason });
    return { status: 'ack', hash: result.hash };
  });
}

/**
 * The controller's public key, read from its file again for each push. The file
 * is mounted from the ConfigMap the controller publishes, which the kubelet
 * updates in place when the controller's key is rotated: a running sidecar
 * then trusts the new key, and only it, without a restart. A file that cannot
 * be read or holds no key fails the push; no earlier key stands in for it.
 */
class ControllerKeyFile {
  readonly #file: string;
  #loaded: { text: string; key: VerifyKey } | undefined;

  constructor(file: string) {
    this.#file = file;
  }

  async current(): Promise<VerifyKey> {
    const text = await readFile(this.#file, 'utf8');
    if (this.#loaded?.text !== text) this.#loaded = { text, key: await importKey(text) };
    return this.#loaded.key;
  }
}

function importKey(text: string): ReturnType<typeof importJWK> {
  const jwk = JSON.parse(text) as JWK;
  return importJWK(jwk, jwk.alg ?? (jwk.crv === 'Ed25519' ? 'EdDSA' : 'ES256'));
}
