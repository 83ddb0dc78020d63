// The request path, one way, once a policy is loaded and the spool has room:
// auth → body (read, then parsed in the route's dialect) → access → input
// limits → rate limit → mask → approve → forward → record. Only the bytes
// limit comes before access: the model access is judged for is named in the
// body. Each step either hands its result on or ends the request with a
// refusal; every ending, good or bad, ends in the request's audit record, and
// the caller hears nothing before the request is durably on record. A
// forwarded request's record comes in two parts (see record.ts), the first
// made durable while the model works.
import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import type { MaskingEngine, RecordOutcome } from '@veil/core';
import type { ApprovalsClient } from '../approvals/client.ts';
import type { RecordedDecisions } from '../approvals/evidence.ts';
import { HeldRequests, holdForApproval } from '../approvals/hold.ts';
import { matchApprovalRule } from '../approvals/rules.ts';
import type { AuditSink } from '../audit/sink.ts';
import type { Identity } from '../auth/identity.ts';
import { type Dialect, inputParam, type ParsedEmbedRequest, type TextSlot } from '../dialects/index.ts';
import type { HashKey } from '../hashkey.ts';
import type { ActivePolicy } from '../policy/active.ts';
import type { Telemetry } from '../telemetry.ts';
import { type Upstream, UpstreamError } from '../upstream.ts';
import { BodyTooLargeError, readBody } from './body.ts';
import type { BodyBudget, BodyLease } from './body-budget.ts';
import type { InFlight } from './in-flight.ts';
import { recordedInputs } from './inputs.ts';
import {
  elapsedMs,
  newTrace,
  noteMasking,
  record,
  recordApproval,
  recordForwarding,
  type Trace,
} from './record.ts';
import { JSON_HEADERS, Refusal, refusalReply, toRefusal, unauthenticated } from './refusal.ts';
import { upstreamFailureRefusal, upstreamStatusRefusal } from './upstream-status.ts';

export interface IncomingEmbedRequest {
  readonly path: string;
  readonly authorization: string | undefined;
  readonly contentLength: string | undefined;
  /** All request headers, lower-cased names: approval rules match on them. */
  readonly headers: IncomingHttpHeaders;
  readonly body: Readable;
  /** A signal that aborts when the caller goes away before it is answered (it ends a hold, and calls off the model's call). */
  readonly callerGone?: () => AbortSignal;
}

export interface ProxyReply {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: Buffer | string;
}

export interface PipelineDeps {
  readonly policy: () => ActivePolicy | undefined;
  readonly upstream: Upstream;
  readonly sink: AuditSink;
  readonly telemetry: Telemetry;
  /** The model name recorded and matched for APIs whose requests carry none (TEI). */
  readonly defaultModel: string;
  /** Keys masking's hash tokens, input digests and, when shared, approval payload digests. */
  readonly hashKey: HashKey;
  /** The controller's approvals API; without it a request an approval rule holds gets 503. */
  readonly approvals?: ApprovalsClient;
  /** This pod's name, sent with each approval opened. */
  readonly podName?: string;
  /** The approval decisions this sidecar recorded, kept across requests so each is recorded once. */
  readonly approvalDecisions: RecordedDecisions;
  /** Requests held for approval now, per caller: the cap on them holds across requests. */
  readonly heldRequests: HeldRequests;
  /** The request bodies held at once, across callers. */
  readonly bodyBudget: BodyBudget;
  /** Aborts when the sidecar begins to stop: requests held for approval are answered at once. */
  readonly stopping?: AbortSignal;
  /** The requests that may call the model, until each is on record. */
  readonly inFlight: InFlight;
}

export async function handleEmbedding(
  deps: PipelineDeps,
  dialect: Dialect,
  request: IncomingEmbedRequest,
): Promise<ProxyReply> {
  const trace = newTrace();
  const lease = deps.bodyBudget.lease();
  deps.inFlight.enter();
  let reply: ProxyReply;
  let outcome: RecordOutcome;
  let error: string | undefined;
  try {
    const upstream = await run(deps, dialect, request, lease, trace);
    reply = upstream.reply;
    outcome = upstream.outcome;
  } catch (thrown) {
    const refusal = toRefusal(thrown);
    reply = refusalReply(dialect, refusal);
    outcome = refusal.outcome;
    error = refusal.detail;
  }
  try {
    return await record(deps, dialect, dialect.name, request.path, trace, reply, outcome, error);
  } finally {
    lease.release();
    deps.inFlight.leave();
  }
}

async function run(
  deps: PipelineDeps,
  dialect: Dialect,
  request: IncomingEmbedRequest,
  lease: BodyLease,
  trace: Trace,
): Promise<{ reply: ProxyReply; outcome: RecordOutcome }> {
  const policy = deps.policy();
  if (!policy) throw new Refusal(503, 'unavailable', 'unavailable', 'no valid policy is loaded');
  trace.policy = policy;
  refuseWhenSpoolFull(deps.sink);

  const identity = await deps.telemetry.span('auth', () => authenticate(policy, request, trace));
  trace.identity = identity;
  refuseEncodedBody(request.headers);
  const body = await readJson(request, policy.spec.limits.maxBytesPerRequest, lease);
  const parsed = dialect.parse(body.json, request.path);
  const model = parsed.model || deps.defaultModel;
  trace.model = model;
  trace.inputCount = parsed.inputCount;

  const charge = deps.telemetry.span('policy', () => enforce(policy, identity, model, parsed));

  let now: { policy: ActivePolicy; forwardBody: string };
  try {
    const forwardBody = deps.telemetry.span('mask', () =>
      mask(deps, policy, dialect, request.path, body, parsed, trace),
    );
    const held = await deps.telemetry.span('approve', () =>
      approve(deps, policy, dialect, request, forwardBody, lease, trace),
    );
    if (held) {
      charge.giveBack();
      return held;
    }
    now = await underPolicyNow(deps, policy, dialect, request, body, parsed, trace, forwardBody);
  } catch (error) {
    charge.giveBack();
    throw error;
  }
  return deps.telemetry.span('upstream', () =>
    forward(deps, now.policy, dialect, request, now.forwardBody, parsed.texts, trace),
  );
}

/**
 * A hold for approval can last minutes, and the policy can change meanwhile:
 * what is forwarded must be admitted, and masked, by the policy in force when
 * it is forwarded. Cutting a caller off (`access.rules: []`, or their issuer
 * removed) must also stop the requests they have waiting. Under a changed
 * policy the caller is authenticated and checked again, held to its input
 * and size limits (lowered limits bind what is still waiting), and the body
 * masked again; the approval granted stands.
 */
async function underPolicyNow(
  deps: PipelineDeps,
  policy: ActivePolicy,
  dialect: Dialect,
  request: IncomingEmbedRequest,
  body: { bytes: Buffer; json: unknown },
  parsed: ParsedEmbedRequest,
  trace: Trace,
  forwardBody: string,
): Promise<{ policy: ActivePolicy; forwardBody: string }> {
  const now = deps.policy();
  if (now?.hash === policy.hash) return { policy, forwardBody };
  if (!now) throw new Refusal(503, 'unavailable', 'unavailable', 'no valid policy is loaded');
  trace.policy = now;
  const identity = await deps.telemetry.span('auth', () => authenticate(now, request, trace));
  trace.identity = identity;
  deps.telemetry.span('policy', () => {
    refuseWhenDenied(now, identity, trace.model ?? deps.defaultModel);
    refuseOverLimits(now, parsed.inputCount, body.bytes.length);
  });
  trace.masking.length = 0;
  const masked = deps.telemetry.span('mask', () =>
    mask(deps, now, dialect, request.path, body, parsed, trace),
  );
  return { policy: now, forwardBody: masked };
}

/** Vectors taken from a caller's rate budget, to give back if the model is not called after all. */
interface Charge {
  giveBack(): void;
}

/** The policy's access rules and limits for this caller, model and request; throws a Refusal. */
function enforce(
  policy: ActivePolicy,
  identity: Identity,
  model: string,
  parsed: ParsedEmbedRequest,
): Charge {
  // A caller denied the model learns that, not the policy's limits.
  refuseWhenDenied(policy, identity, model);
  refuseTooManyInputs(policy, parsed.inputCount);
  const key = `${identity.issuer} ${identity.subject}`;
  const rate = policy.limiter.take(key, parsed.inputCount);
  if (!rate.ok) {
    throw new Refusal(429, 'rate_limited', 'rate_limited', 'vectors-per-minute limit reached', {
      'retry-after': String(rate.retryAfterSeconds),
    });
  }
  return { giveBack: () => policy.limiter.giveBack(key, parsed.inputCount) };
}

/**
 * A spool past its reserve takes no new request, embedding or passthrough: the
 * room left is for the records of requests already let in.
 */
export function refuseWhenSpoolFull(sink: AuditSink): void {
  if (!sink.accepting()) {
    throw new Refusal(503, 'unavailable', 'unavailable', 'the audit spool is full; try again later', {
      'retry-after': '5',
    });
  }
}

/**
 * Neither Fastify nor the proxy decodes a compressed body, and one the proxy
 * cannot read can be neither judged nor masked: it is refused before it is
 * read, rather than as JSON it cannot be.
 */
export function refuseEncodedBody(headers: IncomingHttpHeaders): void {
  const encoding = headers['content-encoding'];
  if (encoding === undefined) return;
  const coding = encoding.trim().toLowerCase();
  if (coding === '' || coding === 'identity') return;
  throw new Refusal(
    415,
    'invalid_request',
    'invalid',
    'compressed request bodies are not accepted: send the body without a Content-Encoding',
    { 'accept-encoding': 'identity' },
  );
}

/** Access is deny by default, and a matching deny rule wins (enforce/access.ts). */
export function refuseWhenDenied(policy: ActivePolicy, identity: Identity, model: string): void {
  if (!policy.access(identity, model).allowed) {
    throw new Refusal(403, 'forbidden', 'denied', `${identity.subject} may not use model ${model}`);
  }
}

/**
 * The limits of a policy other than the one the body was read under: the
 * bytes already read are measured against it as the reading would have.
 */
function refuseOverLimits(policy: ActivePolicy, inputCount: number, bodyBytes: number): void {
  const limit = policy.spec.limits.maxBytesPerRequest;
  if (bodyBytes > limit) throw tooLargeBody(limit);
  refuseTooManyInputs(policy, inputCount);
}

function tooLargeBody(limit: number): Refusal {
  return new Refusal(413, 'too_large', 'too_large', `request body is larger than ${limit} bytes`);
}

/**
 * A request with more inputs than the per-minute budget could never pass the
 * rate limit: it is too large, not early, so no Retry-After would help.
 */
function refuseTooManyInputs(policy: ActivePolicy, inputCount: number): void {
  const { maxInputsPerRequest, vectorsPerMinute } = policy.spec.limits;
  if (inputCount > maxInputsPerRequest) {
    throw new Refusal(
      413,
      'too_large',
      'too_large',
      `${inputCount} inputs exceed the limit of ${maxInputsPerRequest}`,
    );
  }
  if (inputCount > vectorsPerMinute) {
    throw new Refusal(
      413,
      'too_large',
      'too_large',
      `${inputCount} inputs exceed the budget of ${vectorsPerMinute} vectors per minute`,
    );
  }
}

/**
 * Step 4: a request an approval rule matches waits for people (see
 * approvals/hold.ts). Resolves undefined when it may be forwarded, a reply when
 * it is answered now (deferred: 202), or throws a Refusal.
 */
async function approve(
  deps: PipelineDeps,
  policy: ActivePolicy,
  dialect: Dialect,
  request: IncomingEmbedRequest,
  forwardBody: string,
  lease: BodyLease,
  trace: Trace,
): Promise<{ reply: ProxyReply; outcome: RecordOutcome } | undefined> {
  const identity = trace.identity;
  if (!identity || policy.spec.approvals.rules.length === 0) return undefined;
  const model = trace.model ?? '';
  const rule = matchApprovalRule(policy.spec.approvals.rules, {
    inputCount: trace.inputCount,
    model,
    headers: request.headers,
    groups: identity.groups,
  });
  if (!rule) return undefined;
  const started = performance.now();
  try {
    return await holdForApproval(
      {
        client: deps.approvals,
        podName: deps.podName ?? 'unknown',
        policyName: policy.name,
        rule,
        api: dialect.name,
        identity,
        model,
        inputCount: trace.inputCount,
        body: forwardBody,
        hashKey: deps.hashKey,
        bodyBytes: lease.bytes,
        headers: request.headers,
        record: (event) => recordApproval(deps, dialect.name, request.path, trace, event),
        decisions: deps.approvalDecisions,
        held: deps.heldRequests,
        maxPendingPerCaller: policy.spec.approvals.maxPendingPerCaller,
        ...(request.callerGone === undefined ? {} : { signal: request.callerGone() }),
        ...(deps.stopping === undefined ? {} : { stopping: deps.stopping }),
      },
      trace,
    );
  } finally {
    trace.latency.approvalMs = elapsedMs(started);
  }
}

async function authenticate(
  policy: ActivePolicy,
  request: IncomingEmbedRequest,
  trace: Trace,
): Promise<Identity> {
  const started = performance.now();
  const result = await policy.authenticator.authenticate(request.authorization);
  trace.latency.authMs = elapsedMs(started);
  if (!result.ok) throw unauthenticated(result);
  return result.identity;
}

async function readJson(
  request: IncomingEmbedRequest,
  limit: number,
  lease: BodyLease,
): Promise<{ bytes: Buffer; json: unknown }> {
  let bytes: Buffer;
  try {
    bytes = await readBody(request.body, request.contentLength, limit, lease);
  } catch (error) {
    if (error instanceof BodyTooLargeError) throw tooLargeBody(limit);
    throw error;
  }
  try {
    return { bytes, json: JSON.parse(bytes.toString('utf8')) };
  } catch {
    throw new Refusal(400, 'invalid_request', 'invalid', 'request body is not valid JSON');
  }
}

/** Returns the body to forward: as Veil read it, with the texts forward masking changed. */
function mask(
  deps: PipelineDeps,
  policy: ActivePolicy,
  dialect: Dialect,
  path: string,
  request: { json: unknown },
  parsed: ParsedEmbedRequest,
  trace: Trace,
): string {
  const started = performance.now();
  const engine = policy.masking;
  let texts: readonly string[] = parsed.texts;
  let json = request.json;
  if (engine.hasScope('forward')) {
    if (parsed.tokenInputs) {
      // Token ids cannot be inspected without the model's tokenizer: refuse
      // rather than let unmasked data through.
      throw new Refusal(400, 'invalid_request', 'invalid', 'token-array inputs cannot be masked; send text');
    }
    const forward = engine.maskTexts(texts, 'forward', 'input');
    noteMasking(trace, forward.actions, 'forward');
    if (forward.actions.length > 0) {
      refuseEmptied(texts, forward.texts, parsed.textsAt);
      texts = forward.texts;
      json = dialect.withTexts(request.json, path, forward.texts);
    }
    json = withOptionsMasked(engine, json, dialect.optionTextFields ?? [], trace);
  }
  const audit = engine.hasScope('audit') ? engine.maskTexts(texts, 'audit', 'input') : undefined;
  if (audit) noteMasking(trace, audit.actions, 'audit');
  trace.inputs = recordedInputs(
    policy.spec.audit.inputs,
    audit?.texts ?? texts,
    parsed.tokenInputs,
    deps.hashKey.key,
  );
  // The body as Veil read it, never the bytes as sent: where a key comes twice
  // (`{"model":"denied","model":"allowed"}`), Veil's parser keeps the last and
  // a model server may keep the first, and would then embed text, or use a
  // model, that Veil never judged.
  const body = JSON.stringify(json);
  trace.latency.maskMs = elapsedMs(started);
  return body;
}

/**
 * A text masking left empty (`drop` on a whole input) would be embedded as ""
 * (or refused by the model after forwarding): every such input would get one
 * and the same vector. The caller hears which input, never its value; the
 * record keeps the masking actions.
 */
function refuseEmptied(sent: readonly string[], masked: readonly string[], slot: TextSlot | null): void {
  const emptied = masked.findIndex((text, i) => text !== sent[i] && text.trim() === '');
  if (emptied === -1) return;
  const field = inputParam(slot, emptied);
  throw new Refusal(400, 'invalid_request', 'invalid', `${field}: masking removed the whole text`, {}, field);
}

/** The body with its option fields of caller text masked by the forward rules, each recorded by its name. */
function withOptionsMasked(
  engine: MaskingEngine,
  json: unknown,
  fields: readonly string[],
  trace: Trace,
): unknown {
  if (typeof json !== 'object' || json === null) return json;
  let masked: Record<string, unknown> = json as Record<string, unknown>;
  for (const field of fields) {
    const value = masked[field];
    if (typeof value !== 'string') continue;
    const result = engine.maskTexts([value], 'forward', field);
    if (result.actions.length === 0) continue;
    noteMasking(trace, result.actions, 'forward', field);
    masked = withField(masked, field, result.texts[0] ?? '');
  }
  return masked;
}

/**
 * An option masking emptied is left out: these options are optional, and the
 * model learns nothing from an empty one that it would from its absence.
 */
function withField(body: Record<string, unknown>, field: string, text: string): Record<string, unknown> {
  if (text.trim() !== '') return { ...body, [field]: text };
  const { [field]: _emptied, ...rest } = body;
  return rest;
}

/**
 * The most answer an embedding call takes, below the sidecar's own bound
 * (maxAnswerBytes): 1 MiB a vector (16384 floats as
 * JSON text, at 25 bytes each, come to 400 KiB, and Cohere sends a vector once
 * in each type asked for), the texts echoed back (each character of the body
 * sent, escaped, six bytes at most), and 1 MiB for the rest of the answer.
 */
function answerLimit(inputCount: number, forwardBody: string): number {
  return (inputCount + 1) * 1024 * 1024 + 6 * forwardBody.length;
}

async function forward(
  deps: PipelineDeps,
  policy: ActivePolicy,
  dialect: Dialect,
  request: IncomingEmbedRequest,
  body: string,
  callerTexts: readonly string[],
  trace: Trace,
): Promise<{ reply: ProxyReply; outcome: RecordOutcome }> {
  const { path } = request;
  recordForwarding(deps, dialect.name, path, trace);
  const started = performance.now();
  let response: Awaited<ReturnType<Upstream['post']>>;
  try {
    response = await deps.upstream.post(path, body, JSON_HEADERS, {
      signal: request.callerGone?.(),
      maxBytes: answerLimit(trace.inputCount, body),
    });
  } catch (error) {
    if (error instanceof UpstreamError) throw upstreamFailureRefusal(error);
    throw new Refusal(502, 'upstream_error', 'upstream_error', (error as Error).message);
  } finally {
    trace.latency.upstreamMs = elapsedMs(started);
  }
  if (response.status < 200 || response.status >= 300) throw upstreamStatusRefusal(response);
  let parsed: unknown;
  try {
    parsed = JSON.parse(response.body.toString('utf8'));
    trace.vectors = dialect.vectors(parsed, path);
  } catch {
    throw new Refusal(
      502,
      'upstream_error',
      'upstream_error',
      'the model returned an invalid embedding response',
    );
  }
  // Texts a model echoes are the ones it embedded, masked: a hash token handed
  // back would let a caller make tokens of guessed values. The caller gets its
  // own texts, which it sent and knows, and response rules apply to those.
  let answer = dialect.withCallerTexts?.(parsed, callerTexts) ?? parsed;
  let reached = false;
  if (policy.masking.hasScope('response')) {
    const masked = policy.masking.maskResponse(answer, 'response');
    noteMasking(trace, masked.actions, 'response');
    answer = masked.body;
    reached = masked.reached;
  }
  // Response masking judged the answer as parsed, where a key that comes twice
  // keeps its last value: where the rules name anything in it, the caller gets
  // that, never bytes whose first value a caller's parser might keep.
  if (answer === parsed && !reached) {
    return { reply: { status: 200, headers: JSON_HEADERS, body: response.body }, outcome: 'allowed' };
  }
  const replyBody = JSON.stringify(answer);
  // JSON writes -0 as 0, another float32: the record digests the vectors the caller gets.
  trace.vectors = dialect.vectors(JSON.parse(replyBody), path);
  return { reply: { status: 200, headers: JSON_HEADERS, body: replyBody }, outcome: 'allowed' };
}
