// A sidecar's admin port as the controller sees it: GET, PUT and DELETE
// /v1/policy, pushes verified like the real sidecar verifies them (issuer,
// audience bound to the pod, EdDSA, exp and iat required, the `policy` claim
// naming the body, the `revoke` claim naming the policy revoked),
// over TLS with a certificate the controller's CA issued for its pod. The real
// sidecar is exercised in test/e2e/kube; this one lets a test make it slow,
// refuse, go away, or show another pod's certificate.
import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { type CryptoKey, importJWK, type JWK, type JWTPayload, jwtVerify } from 'jose';
import type { ControllerKey } from '../../../src/controller/keys.ts';

/** ack; nack (422); hang (never answer); fail (503); lost (apply, then answer 503 as if the answer got lost). */
export type Behaviour = 'ack' | 'nack' | 'hang' | 'fail' | 'lost';

export type ReceivedPush = { name: string; spec: unknown; claims: JWTPayload };

export type ReceivedRevocation = { name: string; claims: JWTPayload };

export class FakeSidecar {
  readonly uid: string;
  hash: string | undefined;
  behaviour: Behaviour = 'ack';
  readonly puts: ReceivedPush[] = [];
  readonly deletes: ReceivedRevocation[] = [];
  /** Every PUT and DELETE taken, in order: `PUT <hash>`, `DELETE <name>`. */
  readonly changes: string[] = [];
  gets = 0;
  /** Added to every answer, for a sidecar that answers more than an ACK. */
  padding: string | undefined;
  #server: Server | undefined;
  /** Whose certificate it shows: its own pod's unless a test says otherwise. */
  certificateOf: string;
  #key: CryptoKey | Uint8Array | undefined;
  #controller: ControllerKey;
  #publicJwk: JWK;
  #port = 0;

  constructor(uid: string, controller: ControllerKey, hash?: string) {
    this.uid = uid;
    this.certificateOf = uid;
    this.#controller = controller;
    this.#publicJwk = controller.publicJwk;
    this.hash = hash;
  }

  get adminUrl(): string {
    return `https://127.0.0.1:${this.#port}`;
  }

  /** Listens on its old port again after stop(), as a restarted sidecar would. */
  async start(): Promise<void> {
    this.#key ??= await importJWK(this.#publicJwk, 'EdDSA');
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const tls = {
      key: privateKey.export({ type: 'pkcs8', format: 'pem' }),
      cert: this.#controller.authority.issue(publicKey, this.certificateOf).cert,
    };
    const server = createServer(tls, (request, response) => {
      this.#handle(request)
        .then(({ status, body }) => {
          if (status === 0) return; // hang: never answer
          const answer = this.padding === undefined ? body : { ...(body as object), padding: this.padding };
          response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
        })
        .catch(() => response.writeHead(500).end());
    });
    server.listen(this.#port, '127.0.0.1');
    await once(server, 'listening');
    this.#port = (server.address() as AddressInfo).port;
    this.#server = server;
  }

  async stop(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    server.closeAllConnections();
    server.close();
    await once(server, 'close');
  }

  async #handle(request: IncomingMessage): Promise<{ status: number; body: unknown }> {
    if (request.method === 'GET') {
      this.gets++;
      return this.hash
        ? { status: 200, body: { name: 'default', hash: this.hash } }
        : { status: 404, body: {} };
    }
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const token = /^Bearer (.+)$/.exec(request.headers.authorization ?? '')?.[1] ?? '';
    let claims: JWTPayload;
    try {
      ({ payload: claims } = await jwtVerify(token, this.#key as CryptoKey, {
        issuer: 'veil-controller',
        audience: `veil-sidecar:${this.uid}`,
        algorithms: ['EdDSA'],
        maxTokenAge: '5m',
        requiredClaims: ['exp', 'iat'],
      }));
    } catch {
      return { status: 401, body: { status: 'nack', reason: 'push not signed by the controller' } };
    }
    if (request.method === 'DELETE') {
      const revoked = claims.revoke as { name?: unknown; hash?: unknown } | undefined;
      if (typeof revoked?.name !== 'string' || typeof revoked.hash !== 'string' || 'policy' in claims)
        return { status: 401, body: { status: 'nack', reason: 'not a revocation token' } };
      this.deletes.push({ name: revoked.name, claims });
      if (this.behaviour === 'hang') return { status: 0, body: undefined };
      if (this.behaviour === 'fail') return { status: 503, body: { error: 'starting' } };
      if (this.behaviour === 'nack')
        return { status: 422, body: { status: 'nack', reason: `enforces default, not ${revoked.name}` } };
      if (this.hash !== undefined && this.hash !== revoked.hash)
        return {
          status: 422,
          body: { status: 'nack', reason: `enforces ${this.hash}, not ${revoked.hash}` },
        };
      this.hash = undefined;
      this.changes.push(`DELETE ${revoked.name}`);
      if (this.behaviour === 'lost') return { status: 503, body: { error: 'gateway' } };
      return { status: 200, body: { status: 'ack', revoked: revoked.name } };
    }
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
      name: string;
      spec: { hash: string };
    };
    const bound = claims.policy as { name?: unknown; hash?: unknown } | undefined;
    if (bound?.name !== body.name || bound.hash !== body.spec.hash) {
      return {
        status: 401,
        body: { status: 'nack', reason: 'the policy is not the one its push token names' },
      };
    }
    this.puts.push({ name: body.name, spec: body.spec, claims });
    if (this.behaviour === 'hang') return { status: 0, body: undefined };
    if (this.behaviour === 'fail') return { status: 503, body: { error: 'starting' } };
    if (this.behaviour === 'nack')
      return { status: 422, body: { status: 'nack', reason: 'masking.rules: no' } };
    // Test specs carry the hash they stand for, so the fake needs no schema.
    this.hash = body.spec.hash;
    this.changes.push(`PUT ${this.hash}`);
    if (this.behaviour === 'lost') return { status: 503, body: { error: 'gateway' } };
    return { status: 200, body: { status: 'ack', hash: this.hash } };
  }
}
