// The one way the auth module reaches an identity provider: GET a JSON
// document (discovery or JWKS) with undici, no redirects, a size cap and a
// timeout. An issuer may bring its own CA (the kube-apiserver serves HTTPS with
// the cluster CA) and, for the service-account issuer, a bearer credential sent
// to that issuer's origin only.
import { Agent, type Dispatcher, request } from 'undici';
import { AuthError } from './identity.ts';

/** Discovery documents and key sets are a few KiB; a larger answer is not one. */
export const MAX_DOCUMENT_BYTES = 1024 * 1024;
export const REQUEST_TIMEOUT_MS = 5_000;

export interface HttpClientOptions {
  /** Used when no `ca` is given; defaults to undici's global dispatcher. */
  dispatcher?: Dispatcher;
  /** PEM bundle trusted for this issuer instead of the system roots. */
  ca?: string;
  /** A bearer token to present, and to that origin only. */
  credentials?: OriginCredentials;
}

export interface OriginCredentials {
  /** Such as `https://kubernetes.default.svc`: a URL elsewhere gets no token, unless the issuer's own discovery names it (`credit`). */
  origin: string;
  /** Read anew for each request because projected tokens rotate. */
  token: () => string | Promise<string>;
}

export interface HttpClient {
  /** Resolves the parsed body of a 200 answer; anything else throws AuthError('jwks_unavailable'). */
  getJson(url: string, signal?: AbortSignal): Promise<unknown>;
  /**
   * The issuer's own discovery document, read from its origin, named `url` for
   * its keys: that origin gets the credential too (the kube-apiserver names its
   * advertised address there, not the in-cluster name). A URL that only a
   * policy names never does.
   */
  credit(url: URL): void;
  close(): Promise<void>;
}

export function createHttpClient(options: HttpClientOptions = {}): HttpClient {
  const ownAgent = options.ca === undefined ? undefined : new Agent({ connect: { ca: options.ca } });
  const dispatcher = ownAgent ?? options.dispatcher;
  const { credentials } = options;
  const credited = new Set(credentials === undefined ? [] : [credentials.origin]);
  return {
    async getJson(url, signal = AbortSignal.timeout(REQUEST_TIMEOUT_MS)) {
      const headers: Record<string, string> = { accept: 'application/json, application/jwk-set+json' };
      if (credentials !== undefined && credited.has(URL.parse(url)?.origin ?? ''))
        headers.authorization = `Bearer ${await credentialFor(url, credentials)}`;
      let response: Dispatcher.ResponseData;
      try {
        response = await request(url, {
          method: 'GET',
          headers,
          signal,
          ...(dispatcher ? { dispatcher } : {}),
        });
      } catch (cause) {
        throw new AuthError('jwks_unavailable', `GET ${url} failed: ${describe(cause)}`, { cause });
      }
      if (response.statusCode !== 200) {
        await response.body.dump();
        throw new AuthError('jwks_unavailable', `GET ${url} answered HTTP ${response.statusCode}`);
      }
      return parseJson(url, await readCapped(url, response.body));
    },
    credit(url) {
      if (credentials !== undefined) credited.add(url.origin);
    },
    async close() {
      await ownAgent?.close();
    },
  };
}

/** A projected token that cannot be read leaves the issuer's keys out of reach, as a failed request does. */
async function credentialFor(url: string, credentials: OriginCredentials): Promise<string> {
  try {
    return await credentials.token();
  } catch (cause) {
    const detail = `GET ${url}: the credential could not be read: ${describe(cause)}`;
    throw new AuthError('jwks_unavailable', detail, { cause });
  }
}

async function readCapped(url: string, body: AsyncIterable<Uint8Array>): Promise<string> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for await (const chunk of body) {
      size += chunk.byteLength;
      if (size > MAX_DOCUMENT_BYTES)
        throw new AuthError('jwks_unavailable', `GET ${url} answered more than 1 MiB`);
      chunks.push(chunk);
    }
  } catch (cause) {
    if (cause instanceof AuthError) throw cause;
    throw new AuthError('jwks_unavailable', `GET ${url} failed: ${describe(cause)}`, { cause });
  }
  return Buffer.concat(chunks).toString('utf8');
}

function parseJson(url: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw new AuthError('jwks_unavailable', `GET ${url} answered invalid JSON`, { cause });
  }
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? `: ${error.cause.message}` : '';
  return `${error.message}${cause}`;
}
