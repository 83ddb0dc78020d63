import type { IncomingHttpHeaders } from 'node:http';
import type { Dialect } from '../dialects/index.ts';
import { UpstreamError } from '../upstream.ts';
import { BodyTooLargeError, readBody } from './body.ts';
import type { BodyLease } from './body-budget.ts';
import {
  type IncomingEmbedRequest,
  type PipelineDeps,
  type ProxyReply,
  refuseEncodedBody,
  refuseWhenDenied,
  refuseWhenSpoolFull,
} from './pipeline.ts';
import { elapsedMs, newTrace, record, recordForwarding, recordRefusal } from './record.ts';
import { Refusal, refusalReply, toRefusal, unauthenticated } from './refusal.ts';
import { upstreamFailureRefusal } from './upstream-status.ts';

const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD'] as const;
type Method = (typeof METHODS)[number];

/**
 * What the model hears of the caller's headers: how the body is encoded and
 * what answer is wanted. Never the caller's credentials: the proxy checked
 * them, and the model has no use for them.
 */
const FORWARDED_HEADERS = ['content-type', 'accept'] as const;

function forwardedHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const forwarded: Record<string, string> = {};
  for (const name of FORWARDED_HEADERS) {
    const value = headers[name];
    if (typeof value === 'string') forwarded[name] = value;
  }
  return forwarded;
}

/**
 * Any route that is not an embedding API: refused (404) unless the policy
 * allow-lists it, and then, as on the embedding routes, refused while the
 * spool is full, else authenticated, held to the access rules, forwarded as
 * is and recorded.
 */
export async function handlePassthrough(
  deps: PipelineDeps,
  request: IncomingEmbedRequest & { url: string },
  method: string,
  /** The dialect its refusals speak (`refusalDialect`). */
  dialect: Dialect,
): Promise<ProxyReply> {
  const policy = deps.policy();
  const allowed =
    policy?.extraRoutes.has(`${method} ${request.path}`) && (METHODS as readonly string[]).includes(method);
  if (!policy || !allowed) {
    const refusal = policy
      ? new Refusal(
          404,
          'not_found',
          'denied',
          `${method} ${request.path} is not an embedding route this proxy serves`,
        )
      : new Refusal(503, 'unavailable', 'unavailable', 'no valid policy is loaded');
    return recordRefusal(deps, dialect, 'unknown', request.path, refusal);
  }
  const trace = newTrace();
  trace.policy = policy;
  const lease = deps.bodyBudget.lease();
  deps.inFlight.enter();
  try {
    refuseWhenSpoolFull(deps.sink);
    const auth = await deps.telemetry.span('auth', () =>
      policy.authenticator.authenticate(request.authorization),
    );
    if (!auth.ok) throw unauthenticated(auth);
    trace.identity = auth.identity;
    // The route names no model: access is decided, and recorded, for the
    // default model name, as for a TEI request.
    trace.model = deps.defaultModel;
    deps.telemetry.span('policy', () => refuseWhenDenied(policy, auth.identity, deps.defaultModel));
    const body =
      method === 'GET' || method === 'HEAD'
        ? undefined
        : await readLimited(request, policy.spec.limits.maxBytesPerRequest, lease);
    const response = await deps.telemetry.span('upstream', async () => {
      recordForwarding(deps, 'passthrough', request.path, trace);
      const started = performance.now();
      // The route's answers are not known to be embeddings: only the sidecar's own bound holds them.
      const answer = await deps.upstream.send(
        method as Method,
        request.url,
        body,
        forwardedHeaders(request.headers),
        {
          signal: request.callerGone?.(),
        },
      );
      trace.latency.upstreamMs = elapsedMs(started);
      return answer;
    });
    const reply = {
      status: response.status,
      headers: { 'content-type': response.contentType ?? 'application/json' },
      body: response.body,
    };
    return await record(deps, dialect, 'passthrough', request.path, trace, reply, 'allowed', undefined);
  } catch (thrown) {
    const refusal = thrown instanceof UpstreamError ? upstreamFailureRefusal(thrown) : toRefusal(thrown);
    return await record(
      deps,
      dialect,
      'passthrough',
      request.path,
      trace,
      refusalReply(dialect, refusal),
      refusal.outcome,
      refusal.detail,
    );
  } finally {
    lease.release();
    deps.inFlight.leave();
  }
}

async function readLimited(request: IncomingEmbedRequest, limit: number, lease: BodyLease): Promise<Buffer> {
  // Only content-type and accept go to the model: a compressed body would reach it as if plain.
  refuseEncodedBody(request.headers);
  try {
    return await readBody(request.body, request.contentLength, limit, lease);
  } catch (error) {
    if (error instanceof BodyTooLargeError) throw new Refusal(413, 'too_large', 'too_large', error.message);
    throw error;
  }
}
