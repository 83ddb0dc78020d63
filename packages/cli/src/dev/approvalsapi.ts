// The approvals API `veil dev` serves on loopback, for `veil approvals … --dev`:
//   GET  /v1/approvals                              every approval, oldest first
//   GET  /v1/approvals/<ns>/<name>                   one approval
//   POST /v1/approvals/<ns>/<name>/decisions         {decision, reason}: one decision
//
// Callers present a bearer JWT from the dev issuer with the approvals audience
// (`veil dev token --approver`). The approver is that token's subject and groups,
// never anything in the body, which may carry the decision and its reason only:
// in a cluster the API server vouches for the approver, here the dev issuer's key.
// Anyone who can read ./.veil can mint such a token; it is a development tool.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { StoredApproval } from '@veil/core';
import { errors, importJWK, type JWK, jwtVerify } from 'jose';
import { z } from 'zod';
import type { DevApprovals } from './approvals.ts';

/** Tokens for the approvals API carry this audience; proxy tokens do not work here. */
export const APPROVALS_AUDIENCE = 'veil-dev-approvals';

const MAX_BODY = 16 * 1024;
const dnsLabel = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

const claimsSchema = z.looseObject({
  sub: z.string().min(1).max(512),
  groups: z.array(z.string().min(1)).default([]),
});

/** The body of a decision: what was decided and why; who decided is the token's. */
export const decisionBodySchema = z
  .object({
    decision: z.enum(['approve', 'deny']),
    reason: z.string().trim().min(1, 'a decision needs a reason').max(1024),
  })
  .strict();

export interface DevApprovalsApiOptions {
  readonly approvals: DevApprovals;
  /** The dev issuer's URL, which tokens must name as `iss`. */
  readonly issuer: string;
  /** The dev issuer's signing key (private or public JWK with `alg`). */
  readonly issuerKey: JWK;
  readonly host?: string;
  /** 0 picks a free port. */
  readonly port: number;
}

export interface DevApprovalsApi {
  readonly url: string;
  close(): Promise<void>;
}

class HttpError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

export async function startDevApprovalsApi(options: DevApprovalsApiOptions): Promise<DevApprovalsApi> {
  const { kty, crv, x, y, n, e, alg } = options.issuerKey;
  if (alg === undefined) throw new Error('the dev issuer key names no algorithm');
  const key = await importJWK({ kty, crv, x, y, n, e }, alg);

  async function approver(request: IncomingMessage): Promise<{ username: string; groups: string[] }> {
    const token = /^Bearer\s+(\S+)$/i.exec(request.headers.authorization ?? '')?.[1];
    if (token === undefined) {
      throw new HttpError(401, 'an approver token is required (Authorization: Bearer …)');
    }
    let payload: unknown;
    try {
      ({ payload } = await jwtVerify(token, key, {
        issuer: options.issuer,
        audience: APPROVALS_AUDIENCE,
        algorithms: [alg as string],
        clockTolerance: 30,
      }));
    } catch (error) {
      throw new HttpError(401, tokenProblem(error, options.issuer));
    }
    const claims = claimsSchema.safeParse(payload);
    if (!claims.success) throw new HttpError(401, 'the token has no usable sub and groups claims');
    return { username: claims.data.sub, groups: claims.data.groups };
  }

  async function handle(request: IncomingMessage): Promise<{ status: number; body: unknown }> {
    const path = new URL(request.url ?? '/', 'http://localhost').pathname;
    if (path === '/healthz' && request.method === 'GET') return { status: 200, body: { ok: true } };
    const parts = path.split('/').filter(Boolean);
    if (parts[0] !== 'v1' || parts[1] !== 'approvals' || parts.length > 5) {
      throw new HttpError(404, `no route ${request.method} ${path}`);
    }
    const user = await approver(request);
    const [, , namespace, name, action] = parts;
    if (namespace === undefined) {
      if (request.method !== 'GET') throw new HttpError(405, 'list with GET');
      return { status: 200, body: { items: options.approvals.list() } };
    }
    if (name === undefined || !dnsLabel.test(namespace) || !dnsLabel.test(name)) {
      throw new HttpError(400, 'an approval is named NAMESPACE/NAME, both DNS labels');
    }
    if (action === undefined) {
      if (request.method !== 'GET') throw new HttpError(405, 'read an approval with GET');
      return { status: 200, body: found(options.approvals.get(namespace, name), namespace, name) };
    }
    if (action !== 'decisions') throw new HttpError(404, `no route ${request.method} ${path}`);
    if (request.method !== 'POST') throw new HttpError(405, 'decide with POST');
    const body = decisionBodySchema.safeParse(await readJson(request));
    if (!body.success) {
      const unknownKeys = body.error.issues.flatMap((i) => (i.code === 'unrecognized_keys' ? i.keys : []));
      throw new HttpError(
        400,
        unknownKeys.length > 0
          ? `a decision carries decision and reason only, not ${unknownKeys.join(', ')}: the approver is who the token says`
          : `invalid decision: ${body.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ')}`,
      );
    }
    const decided = options.approvals.decide(namespace, name, user, body.data);
    if (!decided.ok) throw new HttpError(decided.status, decided.message);
    return { status: 200, body: decided.approval };
  }

  const server = createServer((request, response) => {
    handle(request).then(
      ({ status, body }) => send(response, status, body),
      (error: unknown) =>
        error instanceof HttpError
          ? send(response, error.status, { error: error.message })
          : send(response, 500, { error: 'internal error' }),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}

function found(approval: StoredApproval | undefined, namespace: string, name: string): StoredApproval {
  if (approval === undefined) throw new HttpError(404, `no approval ${namespace}/${name}`);
  return approval;
}

/** Why a token was refused, in words that say what to do about it. */
function tokenProblem(error: unknown, issuer: string): string {
  if (error instanceof errors.JWTExpired) return 'the token has expired: mint a new one';
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.claim === 'aud') {
      return (
        `the token is not an approver token (audience ${APPROVALS_AUDIENCE}): ` +
        'mint one with `npx veil dev token --approver`'
      );
    }
    if (error.claim === 'iss') return `the token was not issued by this veil dev (${issuer}): mint a new one`;
    return `the token's ${error.claim} claim is not valid: ${error.reason}`;
  }
  if (error instanceof errors.JWSSignatureVerificationFailed) {
    return "the token is not signed by this veil dev's issuer key: mint it in the same folder";
  }
  return `the token cannot be verified (${(error as Error).message})`;
}

async function readJson(request: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new HttpError(413, `the body exceeds ${MAX_BODY} bytes`);
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpError(400, 'the body is not JSON');
  }
}

function send(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  response.end(JSON.stringify(body));
}
