import { type IncomingMessage, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import {
  type ApiName,
  allEmbeddingPaths,
  type Dialect,
  dialectFor,
  refusalDialect,
} from '../dialects/index.ts';
import type { Telemetry } from '../telemetry.ts';
import { handlePassthrough } from './passthrough.ts';
import { handleEmbedding, type PipelineDeps, type ProxyReply } from './pipeline.ts';
import { recordRefusal } from './record.ts';
import { Refusal, toRefusal } from './refusal.ts';

export interface ProxyRoutesOptions {
  readonly deps: PipelineDeps;
  readonly api: ApiName | 'auto';
  readonly telemetry: Telemetry;
}

/**
 * The data port: the embedding routes of the configured API, and every other
 * route refused unless the policy allow-lists it. Bodies are left unread here
 * so the pipeline can authenticate first and enforce its size limit while
 * reading.
 */
export async function proxyRoutes(app: FastifyInstance, options: ProxyRoutesOptions): Promise<void> {
  const { deps, api, telemetry } = options;
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null));
  app.addHook('onRequest', refuseWithoutHost(deps, api));

  for (const path of allEmbeddingPaths) {
    const dialect = dialectFor(api, path);
    if (!dialect) continue;
    app.post(path, (request, reply) =>
      telemetry.span('request', async () =>
        send(
          reply,
          // The route's own path, not the one sent: Fastify routes `/api/embedding%73`
          // here decoded, and the dialect must read and forward the body as this route's.
          await handleEmbedding(deps, dialect, {
            ...incoming(request.raw),
            path,
            callerGone: callerGone(reply),
          }),
          deps.stopping,
        ),
      ),
    );
  }
  const passthrough = (request: FastifyRequest, reply: FastifyReply) =>
    telemetry.span('request', async () => {
      const call = { ...incoming(request.raw), callerGone: callerGone(reply) };
      const route = decodedPath(call.path);
      const embedding = dialectFor(api, route);
      const answer = embedding
        ? await recordRefusal(deps, embedding, embedding.name, route, wrongMethod(request.method, route))
        : await handlePassthrough(deps, call, request.method, refusalDialect(api, call.path));
      return send(reply, answer, deps.stopping);
    });
  app.setErrorHandler(refuseUnreadable(deps, api, passthrough));
  app.all('/*', passthrough);
  // A method Fastify does not route (PROPFIND, M-SEARCH …) comes here rather
  // than to `/*`, and is refused as any other route is.
  app.setNotFoundHandler(passthrough);
}

/**
 * Fastify's `frameworkErrors`: a request it cannot route (a URL that does not
 * decode, for one) is refused in the dialect of the API served and recorded, like any
 * other request, rather than answered by Fastify alone.
 */
export function refuseUnroutable(deps: PipelineDeps, api: ApiName | 'auto') {
  return (error: FastifyError, request: FastifyRequest, reply: FastifyReply): void => {
    const what =
      error.code === 'FST_ERR_BAD_URL' ? 'the request URL cannot be decoded' : 'the request cannot be read';
    const dialect = refusalDialect(api, incoming(request.raw).path);
    // The raw URL stays out of the record: it is not known to be text.
    void refuseBeforeRoute(deps, reply, dialect, 'unknown', '(undecodable)', invalid(what));
  };
}

/**
 * The routes' error handler. Fastify would answer a Content-Type it cannot
 * parse with its own 415 before the route runs: such a request is refused 400
 * in the dialect of the route it was sent to, before authentication, and
 * recorded like any other. A QUERY without a Content-Type, which Fastify
 * refuses the same way (RFC 10008 wants one), goes to its route: QUERY is no
 * method the proxy serves. Anything else here is a handler that failed before
 * its request was on record: a 500, recorded.
 */
function refuseUnreadable(
  deps: PipelineDeps,
  api: ApiName | 'auto',
  passthrough: (request: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply>,
) {
  return (error: FastifyError, request: FastifyRequest, reply: FastifyReply): Promise<unknown> => {
    if (error.code === 'FST_ERR_ROUTE_MISSING_CONTENT_TYPE') return passthrough(request, reply);
    const refusal =
      error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE'
        ? invalid('the request Content-Type cannot be parsed')
        : toRefusal(error);
    return refuseOnRoute(deps, api, request, reply, refusal);
  };
}

/**
 * HTTP/1.1 requires a Host header. Node would refuse a request without one
 * itself, neither in dialect nor on record (server.ts turns that off): it is
 * refused here instead, before anything else, and its connection closed as
 * Node would.
 */
function refuseWithoutHost(deps: PipelineDeps, api: ApiName | 'auto') {
  const refusal = new Refusal(400, 'invalid_request', 'invalid', 'the request has no Host header', {
    connection: 'close',
  });
  return (request: FastifyRequest, reply: FastifyReply, done: () => void): void => {
    if (request.headers.host !== undefined || request.raw.httpVersion !== '1.1') return done();
    void refuseOnRoute(deps, api, request, reply, refusal);
  };
}

/** Refuses a request before its handler runs, in the dialect of the route it was sent to. */
function refuseOnRoute(
  deps: PipelineDeps,
  api: ApiName | 'auto',
  request: FastifyRequest,
  reply: FastifyReply,
  refusal: Refusal,
): Promise<FastifyReply> {
  const routePath = request.routeOptions.url ?? '';
  const dialect = dialectFor(api, routePath);
  if (dialect) return refuseBeforeRoute(deps, reply, dialect, dialect.name, routePath, refusal);
  const { path } = incoming(request.raw);
  return refuseBeforeRoute(deps, reply, refusalDialect(api, path), 'unknown', path, refusal);
}

/**
 * Fastify's `clientErrorHandler`: a request Node cannot parse (an ambiguous
 * length, a control character in a header, headers past the size limit, an
 * HTTP/2 preface) or whose head does not arrive in time never becomes a
 * request a route sees. It is refused on record like a URL that does not
 * decode, in the shape of the API served, and its connection closed: the
 * parser cannot go on. What Node reports about a connection that carries no
 * such request (the caller hung up or sent nothing, or a request in progress
 * broke off, which that request's own record tells) only closes it.
 */
export function refuseMalformed(deps: PipelineDeps, api: ApiName | 'auto') {
  const dialect = refusalDialect(api);
  // The parser reports its error again for every chunk that arrives after it.
  const refused = new WeakSet<Socket>();
  return (error: Error & { code?: string }, socket: Socket): void => {
    if (refused.has(socket)) return;
    refused.add(socket);
    if (!answerable(error, socket)) {
      socket.destroy();
      return;
    }
    const refusal = malformed(error.code);
    void deps.telemetry
      .span('request', () => recordRefusal(deps, dialect, 'unknown', '(unparsed)', refusal))
      .then((reply) => answerOnSocket(socket, reply));
  };
}

function answerable(error: Error & { code?: string }, socket: Socket): boolean {
  if (error.code === 'ECONNRESET' || error.code === 'HPE_INVALID_EOF_STATE') return false;
  return socket.writable && socket.bytesRead > 0 && !requestInProgress(socket);
}

/**
 * Whether the connection has a request Node already handed on and has not
 * done with: its body still coming, or its answer not yet written. Node keeps
 * both on the socket, and reads the second for the same purpose when it
 * answers client errors itself.
 */
function requestInProgress(socket: Socket): boolean {
  const { parser, _httpMessage } = socket as Socket & {
    parser?: { incoming?: IncomingMessage | null } | null;
    _httpMessage?: unknown;
  };
  const incoming = parser?.incoming;
  return (incoming != null && !incoming.complete) || _httpMessage != null;
}

function malformed(code: string | undefined): Refusal {
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    return new Refusal(408, 'invalid_request', 'invalid', 'the request did not arrive in time');
  }
  if (code === 'HPE_HEADER_OVERFLOW') {
    return new Refusal(431, 'too_large', 'too_large', 'the request headers are too large');
  }
  return invalid(`the request is not valid HTTP/1.1 (${code ?? 'unknown error'})`);
}

/**
 * Node hands a CONNECT request (a tunnel, as through a forward proxy) to this
 * listener rather than to a route, and without one closes its connection
 * unanswered. It is refused on record as any method the proxy does not serve.
 */
export function refuseConnect(deps: PipelineDeps, api: ApiName | 'auto') {
  const dialect = refusalDialect(api);
  return (request: IncomingMessage, socket: Duplex): void => {
    // Node has let go of the connection: nobody else would hear its errors.
    socket.on('error', () => socket.destroy());
    void deps.telemetry
      .span('request', () => handlePassthrough(deps, incoming(request), request.method ?? 'CONNECT', dialect))
      .then((reply) => answerOnSocket(socket, reply));
  };
}

/** Writes `reply` on a connection that has no response object, then closes it. */
function answerOnSocket(socket: Duplex, reply: ProxyReply): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = typeof reply.body === 'string' ? Buffer.from(reply.body) : reply.body;
  const head = [
    `HTTP/1.1 ${reply.status} ${STATUS_CODES[reply.status] ?? ''}`,
    ...Object.entries(reply.headers).map(([name, value]) => `${name}: ${value}`),
    `content-length: ${body.length}`,
    'connection: close',
    '\r\n',
  ].join('\r\n');
  socket.end(Buffer.concat([Buffer.from(head, 'latin1'), body]), () => socket.destroy());
}

function invalid(message: string): Refusal {
  return new Refusal(400, 'invalid_request', 'invalid', message);
}

/** The path as Fastify routes it: `/api/embedding%73` is the route `/api/embeddings`. */
function decodedPath(path: string): string {
  try {
    return decodeURIComponent(path);
  } catch {
    return path;
  }
}

/** An embedding route asked with another method than POST: the route is there, the method is not. */
function wrongMethod(method: string, path: string): Refusal {
  return new Refusal(405, 'invalid_request', 'invalid', `${method} ${path}: this route takes only POST`, {
    allow: 'POST',
  });
}

/** Answers a request no route handled with `refusal`, once it is on record. */
function refuseBeforeRoute(
  deps: PipelineDeps,
  reply: FastifyReply,
  dialect: Dialect,
  api: ApiName | 'unknown',
  route: string,
  refusal: Refusal,
): Promise<FastifyReply> {
  return deps.telemetry.span('request', () =>
    recordRefusal(deps, dialect, api, route, refusal).then((result) => send(reply, result, deps.stopping)),
  );
}

function incoming(request: IncomingMessage) {
  const url = request.url ?? '/';
  return {
    path: url.split('?')[0] ?? '/',
    url,
    authorization: request.headers.authorization,
    contentLength: request.headers['content-length'],
    headers: request.headers,
    body: request,
  };
}

/**
 * A signal that aborts when the connection closes before the answer is sent:
 * the caller hung up. Made on first use, since only held requests and model
 * calls need one.
 */
function callerGone(reply: FastifyReply): () => AbortSignal {
  let signal: AbortSignal | undefined;
  return () => {
    if (signal) return signal;
    const gone = new AbortController();
    const hungUp = () => !reply.raw.writableEnded && gone.abort();
    if (reply.raw.closed) hungUp();
    else reply.raw.once('close', hungUp);
    signal = gone.signal;
    return signal;
  };
}

function send(reply: FastifyReply, result: ProxyReply, stopping: AbortSignal | undefined): FastifyReply {
  // Kept alive, the connection of a request begun before the sidecar began to
  // stop would hold the data port's close open until the keep-alive timeout.
  if (stopping?.aborted) reply.header('connection', 'close');
  return reply.code(result.status).headers(result.headers).send(result.body);
}
