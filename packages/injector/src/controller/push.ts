// Talks to one sidecar's admin port: `GET /v1/policy` (what it enforces now),
// `PUT /v1/policy` (enforce this) and `DELETE /v1/policy` (the policy was
// deleted: enforce nothing), the last two with a push token for that pod only.
// Both go over TLS, and the sidecar must show a certificate from the controller's
// own CA (certs/podcerts.ts) naming the pod's UID: an answer from anyone else on
// the pod network, another pod included, is a failed delivery, never an ACK. The
// token, signed by the controller, bound to the pod's UID and to the policy it
// carries (name and content hash) or revokes (name), used once and living a
// minute, is what authorises the push at the sidecar. See docs/security.md.
import { sidecarPolicySpec } from '@veil/core';
import { Agent, type Dispatcher, request } from 'undici';
import { z } from 'zod';
import { podServerName } from '../certs/podcerts.ts';
import type { ControllerKey, RevokedPolicy } from './keys.ts';

export type SidecarTarget = {
  /** The pod UID: the audience of the push token and the name its certificate must carry. */
  uid: string;
  /** `https://<pod IP>:<veil-admin port>` */
  adminUrl: string;
};

export type PolicyDocument = {
  name: string;
  /** The content hash of the validated spec: the push token binds it, the sidecar ACKs it. */
  hash: string;
  spec: unknown;
};

export type PushOutcome =
  | { kind: 'ack'; hash: string }
  | { kind: 'nack'; reason: string }
  | { kind: 'error'; reason: string };

export type RevokeOutcome =
  | { kind: 'ack' }
  | { kind: 'nack'; reason: string }
  | { kind: 'error'; reason: string };

export type ReadOutcome =
  | { kind: 'policy'; name: string; hash: string }
  | { kind: 'none' }
  | { kind: 'error'; reason: string };

const ackSchema = z.object({ status: z.literal('ack'), hash: z.string().min(1) });
const nackSchema = z.object({ status: z.literal('nack'), reason: z.string() });
const revokedSchema = z.object({ status: z.literal('ack'), revoked: z.string() });
const currentSchema = z.object({ name: z.string(), hash: z.string().min(1) });

export type SidecarClientOptions = {
  key: ControllerKey;
  /** Goes into the token's `sub`: which replica pushed. */
  identity: string;
  /** Per request, connect to last byte; default 5 s. */
  timeoutMs?: number;
};

export class SidecarClient {
  readonly #options: SidecarClientOptions;
  readonly #timeoutMs: number;
  /** Pod UID: a connection pool that accepts that pod's certificate only. */
  readonly #agents = new Map<string, Agent>();

  constructor(options: SidecarClientOptions) {
    this.#options = options;
    this.#timeoutMs = options.timeoutMs ?? 5000;
  }

  /** Drops the connections kept to a pod that is gone. */
  forget(uid: string): void {
    const agent = this.#agents.get(uid);
    this.#agents.delete(uid);
    agent?.close().catch(() => undefined);
  }

  async close(): Promise<void> {
    const agents = [...this.#agents.values()];
    this.#agents.clear();
    await Promise.all(agents.map((agent) => agent.close().catch(() => undefined)));
  }

  #agent(uid: string): Agent {
    let agent = this.#agents.get(uid);
    if (agent === undefined) {
      agent = new Agent({
        connect: {
          ca: this.#options.key.authority.caCert,
          // Node checks the certificate against the server name, not the IP dialled.
          servername: podServerName(uid),
          timeout: this.#timeoutMs,
        },
      });
      this.#agents.set(uid, agent);
    }
    return agent;
  }

  async read(target: SidecarTarget, signal?: AbortSignal): Promise<ReadOutcome> {
    const response = await this.#call(target, { method: 'GET', signal });
    if (response.kind === 'error') return response;
    if (response.status === 404) return { kind: 'none' };
    const parsed = currentSchema.safeParse(response.body);
    if (response.status !== 200 || !parsed.success) {
      return { kind: 'error', reason: `GET /v1/policy answered ${response.status}` };
    }
    return { kind: 'policy', ...parsed.data };
  }

  async push(target: SidecarTarget, policy: PolicyDocument, signal?: AbortSignal): Promise<PushOutcome> {
    const { name, hash, spec } = policy;
    const token = await this.#options.key.sign({
      podUid: target.uid,
      subject: this.#options.identity,
      policy: { name, hash },
    });
    const response = await this.#call(target, {
      method: 'PUT',
      signal,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name, spec: sidecarPolicySpec(spec) }),
    });
    if (response.kind === 'error') return response;
    const ack = ackSchema.safeParse(response.body);
    if (response.status === 200 && ack.success) return { kind: 'ack', hash: ack.data.hash };
    return notAcknowledged('PUT', response);
  }

  /** Tells the sidecar that the policy no longer exists: it drops the version named, and its saved copy. */
  async revoke(target: SidecarTarget, revoked: RevokedPolicy, signal?: AbortSignal): Promise<RevokeOutcome> {
    const { name } = revoked;
    const token = await this.#options.key.sign({
      podUid: target.uid,
      subject: this.#options.identity,
      revoke: revoked,
    });
    const response = await this.#call(target, {
      method: 'DELETE',
      signal,
      headers: { authorization: `Bearer ${token}` },
    });
    if (response.kind === 'error') return response;
    const ack = revokedSchema.safeParse(response.body);
    if (response.status === 200 && ack.success && ack.data.revoked === name) return { kind: 'ack' };
    return notAcknowledged('DELETE', response);
  }

  async #call(
    target: SidecarTarget,
    options: {
      method: 'GET' | 'PUT' | 'DELETE';
      signal?: AbortSignal;
      headers?: Record<string, string>;
      body?: string;
    },
  ): Promise<{ kind: 'response'; status: number; body: unknown } | { kind: 'error'; reason: string }> {
    // Aborted while its token was signed: the pod may be gone, and forgotten
    // already, and a pool made for it now would be kept until the controller stops.
    if (options.signal?.aborted) return { kind: 'error', reason: 'aborted' };
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
    try {
      const response: Dispatcher.ResponseData = await request(`${target.adminUrl}/v1/policy`, {
        method: options.method,
        headers: options.headers,
        body: options.body,
        signal,
        dispatcher: this.#agent(target.uid),
      });
      return {
        kind: 'response',
        status: response.statusCode,
        body: parseJson(await readLimited(response.body)),
      };
    } catch (error) {
      const { code, message } = error as NodeJS.ErrnoException;
      return { kind: 'error', reason: code ? `${code}: ${message}` : message };
    }
  }
}

/**
 * A NACK, or why the answer is none. Only a 422 says the sidecar judged what it
 * was sent; a refused token or a crashing sidecar is a failure to deliver,
 * retried like a network error.
 */
function notAcknowledged(
  method: 'PUT' | 'DELETE',
  response: { status: number; body: unknown },
): { kind: 'nack'; reason: string } | { kind: 'error'; reason: string } {
  const nack = nackSchema.safeParse(response.body);
  if (response.status === 422 && nack.success) return { kind: 'nack', reason: nack.data.reason };
  const detail = nack.success ? `: ${nack.data.reason}` : '';
  return { kind: 'error', reason: `${method} /v1/policy answered ${response.status}${detail}` };
}

/** An ACK or NACK is a few hundred bytes: a sidecar cannot make the controller hold more. */
const maxAnswerBytes = 64 * 1024;

async function readLimited(body: Dispatcher.ResponseData['body']): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += (chunk as Buffer).length;
    if (size > maxAnswerBytes) {
      body.destroy();
      throw new Error(`the sidecar's answer exceeds ${maxAnswerBytes} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
