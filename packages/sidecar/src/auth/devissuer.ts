// A local OpenID Connect issuer for development and tests: it generates
// signing keys, mints tokens, and serves discovery and the JWKS over HTTP(S).
// `veil dev` runs one so a developer can call a local sidecar with real,
// verifiable tokens; the sidecar's tests run one as their IdP. It is never a
// production IdP: keys live in memory and anyone who can reach it gets them
// only as public keys, but anyone who can call `mint` can be anybody.
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import {
  type CryptoKey,
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  importJWK,
  type JSONWebKeySet,
  type JWK,
  type JWTPayload,
  SignJWT,
} from 'jose';

export const devIssuerAlgorithms = ['RS256', 'PS256', 'ES256', 'ES384', 'EdDSA'] as const;
export type DevIssuerAlgorithm = (typeof devIssuerAlgorithms)[number];

export const DEFAULT_TOKEN_LIFETIME_SECONDS = 3600;

export interface AddKeyOptions {
  algorithm?: DevIssuerAlgorithm;
  /** Defaults to the key's JWK thumbprint. */
  kid?: string;
  /** Unpublished keys sign tokens that no verifier can find a key for. */
  publish?: boolean;
}

export interface DevKeyring {
  /** The kid that tokens are signed with unless another is asked for. */
  readonly signingKid: string;
  addKey(options?: AddKeyOptions): Promise<string>;
  /** Adds a published key and signs with it from now on; older keys stay published, as an IdP keeps them while their tokens live. */
  rotate(algorithm?: DevIssuerAlgorithm): Promise<string>;
  /** Stops publishing a key. */
  retire(kid: string): void;
  publicJwk(kid: string): JWK;
  /** The published public keys. */
  jwks(): JSONWebKeySet;
  sign(payload: JWTPayload, kid?: string): Promise<string>;
}

interface DevKey {
  algorithm: DevIssuerAlgorithm;
  privateKey: CryptoKey;
  publicJwk: JWK;
  published: boolean;
}

/**
 * A private JWK for `createDevKeyring`'s `signingKey`, so `veil dev` can keep
 * its issuer key on disk and `veil dev token` can mint for it later.
 */
export async function generateDevSigningKey(algorithm: DevIssuerAlgorithm = 'ES256'): Promise<JWK> {
  const { privateKey } = await generateKeyPair(algorithm, { extractable: true });
  return { ...(await exportJWK(privateKey)), alg: algorithm };
}

/** Signs `payload` with a private JWK made by `generateDevSigningKey`. */
export async function signWithDevKey(privateJwk: JWK, payload: JWTPayload): Promise<string> {
  const algorithm = privateJwk.alg as DevIssuerAlgorithm;
  const kid = await calculateJwkThumbprint(publicPart(privateJwk));
  return new SignJWT(payload)
    .setProtectedHeader({ alg: algorithm, kid, typ: 'JWT' })
    .sign(await importJWK(privateJwk, algorithm));
}

/** Only the public members: a JWKS must never carry d, p, q and friends. */
function publicPart(jwk: JWK): JWK {
  const { kty, crv, x, y, n, e } = jwk;
  return { kty, crv, x, y, n, e };
}

export async function createDevKeyring(
  algorithm: DevIssuerAlgorithm = 'ES256',
  options: { signingKey?: JWK } = {},
): Promise<DevKeyring> {
  const keys = new Map<string, DevKey>();
  const keyFor = (kid: string): DevKey => {
    const key = keys.get(kid);
    if (key === undefined) throw new Error(`no key ${kid}`);
    return key;
  };
  const addKey = async (options: AddKeyOptions = {}): Promise<string> => {
    const keyAlgorithm = options.algorithm ?? algorithm;
    const { privateKey, publicKey } = await generateKeyPair(keyAlgorithm);
    const jwk = await exportJWK(publicKey);
    const kid = options.kid ?? (await calculateJwkThumbprint(jwk));
    if (keys.has(kid)) throw new Error(`key ${kid} exists`);
    keys.set(kid, {
      algorithm: keyAlgorithm,
      privateKey,
      publicJwk: { ...jwk, kid, alg: keyAlgorithm, use: 'sig' },
      published: options.publish ?? true,
    });
    return kid;
  };
  let signingKid = options.signingKey ? await importKey(options.signingKey) : await addKey();
  async function importKey(privateJwk: JWK): Promise<string> {
    const keyAlgorithm = privateJwk.alg as DevIssuerAlgorithm;
    const publicJwk = publicPart(privateJwk);
    const kid = await calculateJwkThumbprint(publicJwk);
    const privateKey = (await importJWK(privateJwk, keyAlgorithm)) as CryptoKey;
    keys.set(kid, {
      algorithm: keyAlgorithm,
      privateKey,
      publicJwk: { ...publicJwk, kid, alg: keyAlgorithm, use: 'sig' },
      published: true,
    });
    return kid;
  }
  return {
    get signingKid() {
      return signingKid;
    },
    addKey,
    async rotate(nextAlgorithm) {
      signingKid = await addKey(nextAlgorithm === undefined ? {} : { algorithm: nextAlgorithm });
      return signingKid;
    },
    retire(kid) {
      keyFor(kid).published = false;
    },
    publicJwk(kid) {
      return { ...keyFor(kid).publicJwk };
    },
    jwks() {
      return { keys: [...keys.values()].filter((key) => key.published).map((key) => ({ ...key.publicJwk })) };
    },
    async sign(payload, kid = signingKid) {
      const key = keyFor(kid);
      return new SignJWT(payload)
        .setProtectedHeader({ alg: key.algorithm, kid, typ: 'JWT' })
        .sign(key.privateKey);
    },
  };
}

export interface DevIssuerOptions {
  /** Defaults to 127.0.0.1. */
  host?: string;
  /** Defaults to 0: any free port. */
  port?: number;
  /** Path part of the issuer URL, such as `/realms/dev`. */
  path?: string;
  /** Serve HTTPS with this PEM key and certificate. */
  tls?: { key: string; cert: string };
  /** Keys to serve; a new keyring of `algorithm` otherwise. */
  keyring?: DevKeyring;
  algorithm?: DevIssuerAlgorithm;
  /** Sees every request before it is answered. */
  onRequest?: (request: IncomingMessage) => void;
}

export interface MintOptions {
  /** Sign with this key instead of the keyring's signing key. */
  kid?: string;
  lifetimeSeconds?: number;
  /** Clock for the default `iat` and `exp`, in ms since the epoch. */
  now?: number;
}

export interface DevIssuer {
  readonly issuer: string;
  readonly jwksUri: string;
  readonly port: number;
  readonly keyring: DevKeyring;
  /** Signs `claims` over defaults for `iss`, `iat` and `exp`. */
  mint(claims: JWTPayload, options?: MintOptions): Promise<string>;
  close(): Promise<void>;
}

export async function startDevIssuer(options: DevIssuerOptions = {}): Promise<DevIssuer> {
  const keyring = options.keyring ?? (await createDevKeyring(options.algorithm));
  const path = (options.path ?? '').replace(/\/+$/, '');
  const host = options.host ?? '127.0.0.1';
  const urls = { issuer: '', jwksUri: '' };
  const routes = new Map<string, () => unknown>([
    [`${path}/.well-known/openid-configuration`, () => discoveryDocument(urls.issuer, urls.jwksUri, keyring)],
    [`${path}/jwks`, () => keyring.jwks()],
  ]);
  const handler = (request: IncomingMessage, response: ServerResponse) => {
    options.onRequest?.(request);
    answer(request, response, routes);
  };
  const server = options.tls ? createHttpsServer(options.tls, handler) : createHttpServer(handler);
  const port = await listen(server, host, options.port ?? 0);
  const hostInUrl = host.includes(':') ? `[${host}]` : host;
  urls.issuer = `${options.tls ? 'https' : 'http'}://${hostInUrl}:${port}${path}`;
  urls.jwksUri = `${urls.issuer}/jwks`;
  return {
    issuer: urls.issuer,
    jwksUri: urls.jwksUri,
    port,
    keyring,
    async mint(claims, mintOptions = {}) {
      const now = Math.floor((mintOptions.now ?? Date.now()) / 1000);
      const lifetime = mintOptions.lifetimeSeconds ?? DEFAULT_TOKEN_LIFETIME_SECONDS;
      return keyring.sign({ iss: urls.issuer, iat: now, exp: now + lifetime, ...claims }, mintOptions.kid);
    },
    close: () => stop(server),
  };
}

function discoveryDocument(issuer: string, jwksUri: string, keyring: DevKeyring): Record<string, unknown> {
  const algorithms = [...new Set(keyring.jwks().keys.map((key) => key.alg))];
  return {
    issuer,
    jwks_uri: jwksUri,
    id_token_signing_alg_values_supported: algorithms,
    response_types_supported: ['id_token'],
    subject_types_supported: ['public'],
  };
}

function answer(
  request: IncomingMessage,
  response: ServerResponse,
  routes: Map<string, () => unknown>,
): void {
  const route = routes.get(new URL(request.url ?? '/', 'http://issuer').pathname);
  if (route === undefined) send(response, 404, { error: 'not found' });
  else if (request.method !== 'GET') send(response, 405, { error: 'method not allowed' });
  else send(response, 200, route());
}

function send(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  response.end(JSON.stringify(body));
}

function listen(server: Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function stop(server: Server): Promise<void> {
  return new Promise((resolve, reject) => {
    server.close((error) => (error ? reject(error) : resolve()));
    // Keep-alive connections from clients would otherwise hold the server open.
    server.closeAllConnections();
  });
}
