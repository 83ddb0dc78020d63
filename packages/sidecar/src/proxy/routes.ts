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
import { newTrace, record } from './record.ts';
import { Refusal, refusalReply, toRefusal } from './refusal.ts';

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
            ...incoming(request),
            path,
            callerGone: callerGone(reply),
          }),
          deps.stopping,
        ),
      ),
    );
  }
  const otherRoutes = refusalDialect(api);
  app.setErrorHandler(refuseUnreadable(deps, api));
  app.all('/*', (request, reply) =>
    telemetry.span('request', async () =>
      send(
        reply,
        await handlePassthrough(deps, incoming(request), request.method, otherRoutes),
        deps.stopping,
      ),
    ),
  );
}

/**
 * Fastify's `frameworkErrors`: a request it cannot route (a URL that does not
 * decode, for one) is refused in the dialect of the API served and recorded, like any
 * other request, rather than answered by Fastify alone.
 */
export function refuseUnroutable(deps: PipelineDeps, api: ApiName | 'auto') {
  const dialect = refusalDialect(api);
  return (error: FastifyError, _request: FastifyRequest, reply: FastifyReply): void => {
    const what =
      error.code === 'FST_ERR_BAD_URL' ? 'the request URL cannot be decoded' : 'the request cannot be read';
    // The raw URL stays out of the record: it is not known to be text.
    refuseBeforeRoute(deps, reply, dialect, 'unknown', '(undecodable)', invalid(what));
  };
}

/**
 * The routes' error handler. Fastify would answer a Content-Type it cannot
 * parse with its own 415 before the route runs: such a request is refused 400
 * in the dialect of the route it was sent to, before authentication, and
 * recorded like any other. Anything else here is a handler that failed before
 * its request was on record: a 500, recorded.
 */
function refuseUnreadable(deps: PipelineDeps, api: ApiName | 'auto') {
  return (error: FastifyError, request: FastifyRequest, reply: FastifyReply): void => {
    const routePath = request.routeOptions.url ?? '';
    const dialect = dialectFor(api, routePath);
    const refusal =
      error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE'
        ? invalid('the request Content-Type cannot be parsed')
        : toRefusal(error);
    if (dialect) refuseBeforeRoute(deps, reply, dialect, dialect.name, routePath, refusal);
    else refuseBeforeRoute(deps, reply, refusalDialect(api), 'unknown', incoming(request).path, refusal);
  };
}

function invalid(message: string): Refusal {
  return new Refusal(400, 'invalid_request', 'invalid', message);
}

/** Answers a request no route handled with `refusal`, once it is on record. */
function refuseBeforeRoute(
  deps: PipelineDeps,
  reply: FastifyReply,
  dialect: Dialect,
  api: ApiName | 'unknown',
  route: string,
  refusal: Refusal,
): void {
  const trace = newTrace();
  trace.policy = deps.policy();
  void record(
    deps,
    dialect,
    api,
    route,
    trace,
    refusalReply(dialect, refusal),
    refusal.outcome,
    refusal.message,
  ).then((result) => send(reply, result, deps.stopping));
}

function incoming(request: FastifyRequest) {
  const authorization = request.headers.authorization;
  return {
    path: request.url.split('?')[0] ?? '/',
    url: request.url,
    authorization,
    contentLength: request.headers['content-length'],
    headers: request.headers,
    body: request.raw,
  };
}

/**
 * A signal that aborts when the connection closes before the answer is sent:
 * the caller hung up. Made on first use, since only held requests need one.
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
