// Step 6 of the request path: the request's audit record. A request that is
// never forwarded has one record, durable before the caller hears anything. A
// forwarded one is recorded in two parts so the wait for the disk overlaps the
// model's: an `incomplete` first part appended as the request goes out and
// fsynced while the model works, then the full record, which names the first.
// The caller is answered once the first part is durable and the full record is
// queued behind it: a crash can then lose a request's outcome, never the request.
import type { MaskingAction, RecordOutcome } from '@veil/core';
import type { ApprovalEvent } from '../approvals/evidence.ts';
import type { AuditDraft, AuditSink } from '../audit/sink.ts';
import { newRecordId } from '../audit/stream.ts';
import type { Identity } from '../auth/identity.ts';
import type { ApiName, Dialect } from '../dialects/index.ts';
import type { ActivePolicy } from '../policy/active.ts';
import type { PipelineDeps, ProxyReply } from './pipeline.ts';
import { Refusal, refusalReply } from './refusal.ts';

/**
 * Adds a masking step's actions to the trace, in `scope` (and at `field` when
 * given). Not push(...): a request of many inputs may hold more actions than a
 * call takes arguments.
 */
export function noteMasking(
  trace: Trace,
  actions: readonly Omit<MaskingAction, 'scope'>[],
  scope: NonNullable<MaskingAction['scope']>,
  field?: string,
): void {
  for (const action of actions) {
    trace.masking.push(field === undefined ? { ...action, scope } : { ...action, field, scope });
  }
}

/** What the record says of the request, filled in as the steps run. */
export interface Trace {
  readonly started: number;
  readonly time: string;
  policy: ActivePolicy | undefined;
  identity: Identity | null;
  model: string | null;
  inputCount: number;
  inputs: AuditDraft['inputs'];
  masking: MaskingAction[];
  latency: { authMs?: number; maskMs?: number; approvalMs?: number; upstreamMs?: number };
  /** The approval that held the request, as the controller last reported it. */
  approval?: AuditDraft['approval'];
  vectors?: { count: number; dimensions: number; digest: string };
  /**
   * The first part of the record, appended as the request went to the model;
   * `durable` resolves with the milliseconds it took to become durable.
   */
  forwarded?: { id: string; durable: Promise<number> };
  /** Time spent so far putting the request on record, for `veil_record_duration`. */
  recordingMs: number;
}

/**
 * Milliseconds since a `performance.now()` reading, to the microsecond. The
 * clock's further digits say nothing about a request and would cost each
 * record about a dozen bytes a latency, to encode, store, hash and ship.
 */
export function elapsedMs(since: number): number {
  return Math.round((performance.now() - since) * 1000) / 1000;
}

export function newTrace(): Trace {
  return {
    started: performance.now(),
    time: new Date().toISOString(),
    policy: undefined,
    identity: null,
    model: null,
    inputCount: 0,
    inputs: undefined,
    masking: [],
    latency: {},
    recordingMs: 0,
  };
}

/** The record schema's limits on caller-chosen text (route, model, claims) and on the error. */
const MAX_TEXT = 512;
const MAX_GROUPS = 256;
const MAX_ERROR = 256;

/**
 * Caller-chosen text cut to what a record holds. A record the schema refuses
 * is never written, and then the request would go unrecorded and unanswered.
 */
function clip(text: string): string {
  return text.length <= MAX_TEXT ? text : `${text.slice(0, MAX_TEXT - 1)}…`;
}

function recordedIdentity(identity: Identity): NonNullable<AuditDraft['identity']> {
  return {
    issuer: clip(identity.issuer),
    subject: clip(identity.subject),
    // An empty group names nobody; the schema wants none.
    groups: identity.groups
      .filter((group) => group !== '')
      .slice(0, MAX_GROUPS)
      .map(clip),
  };
}

type RecordApi = ApiName | 'passthrough' | 'unknown';

/** Who asked what, under which policy: what every record of a request says. */
function requestSubject(api: RecordApi, route: string, trace: Trace) {
  return {
    identity: trace.identity ? recordedIdentity(trace.identity) : null,
    policy: trace.policy ? { name: trace.policy.name, hash: trace.policy.hash } : null,
    api,
    route: clip(route),
    model: trace.model === null ? null : clip(trace.model),
    inputCount: trace.inputCount,
  };
}

/** What the request's records say of it, as far as it has gone. */
function requestDraft(api: RecordApi, route: string, trace: Trace): Omit<AuditDraft, 'outcome' | 'status'> {
  return {
    time: trace.time,
    kind: 'request',
    ...requestSubject(api, route, trace),
    inputs: trace.inputs,
    masking: [...trace.masking],
    approval: trace.approval,
    latency: { ...trace.latency, totalMs: elapsedMs(trace.started) },
  };
}

/**
 * The first part, called just before the request goes to the model: it only
 * starts the append, so the model is called at once; `record` waits for it.
 * A sink that will not take it stops the request here, before the model sees
 * anything: nothing goes out that has not taken its place in the spool. It may
 * not be durable yet when the model is called, so a crash can lose a request
 * the model saw, never one whose caller was answered.
 */
export function recordForwarding(deps: PipelineDeps, api: RecordApi, route: string, trace: Trace): void {
  const started = performance.now();
  const id = newRecordId();
  const draft: AuditDraft = { ...requestDraft(api, route, trace), id, outcome: 'incomplete', status: null };
  let durable: Promise<number>;
  try {
    durable = deps.telemetry.span('record', () => deps.sink.append(draft)).then(() => elapsedMs(started));
  } catch {
    throw new Refusal(
      503,
      'unavailable',
      'unavailable',
      'the request could not be recorded; it was not forwarded',
    );
  }
  // Awaited by `record`; until then a failure must not count as unhandled.
  durable.catch(() => undefined);
  trace.forwarded = { id, durable };
  trace.recordingMs += performance.now() - started;
}

/** A request refused before any step of its own ran, on record under the policy loaded now. */
export function recordRefusal(
  deps: PipelineDeps,
  dialect: Dialect,
  api: RecordApi,
  route: string,
  refusal: Refusal,
): Promise<ProxyReply> {
  const trace = newTrace();
  trace.policy = deps.policy();
  return record(
    deps,
    dialect,
    api,
    route,
    trace,
    refusalReply(dialect, refusal),
    refusal.outcome,
    refusal.detail,
  );
}

/** The request's full record; resolves with `reply`, or with a 503 when the request is not on record. */
export async function record(
  deps: PipelineDeps,
  dialect: Dialect,
  api: RecordApi,
  route: string,
  trace: Trace,
  reply: ProxyReply,
  outcome: RecordOutcome,
  error: string | undefined,
): Promise<ProxyReply> {
  const started = performance.now();
  const draft: AuditDraft = {
    ...requestDraft(api, route, trace),
    outcome,
    status: reply.status,
    vectors: trace.vectors,
    error: error ? error.slice(0, MAX_ERROR) : undefined,
  };
  try {
    await deps.telemetry.span('record', () => putOnRecord(deps.sink, draft, trace.forwarded));
  } catch {
    // Counted as what the caller got: the outcome on record never happened.
    deps.telemetry.requestDone(api, 'unavailable', trace.masking, trace.latency.upstreamMs);
    return refusalReply(
      dialect,
      new Refusal(503, 'unavailable', 'unavailable', 'the request could not be recorded'),
    );
  }
  deps.telemetry.requestDone(api, outcome, trace.masking, trace.latency.upstreamMs);
  deps.telemetry.recordingDone(trace.recordingMs + performance.now() - started);
  return reply;
}

/** Resolves once the caller may be answered (see the top of this file). */
async function putOnRecord(sink: AuditSink, draft: AuditDraft, forwarded: Trace['forwarded']): Promise<void> {
  if (!forwarded) return sink.append(draft);
  const spoolMs = await forwarded.durable;
  await sink.append({ ...draft, latency: { ...draft.latency, spoolMs }, completes: forwarded.id }, 'queued');
}

/**
 * An `approval.*` record of the request in `trace`, appended while the request
 * waits. It is durable before the request goes on, or the request fails closed.
 */
export async function recordApproval(
  deps: PipelineDeps,
  api: ApiName,
  route: string,
  trace: Trace,
  event: ApprovalEvent,
): Promise<void> {
  const draft: AuditDraft = {
    time: new Date().toISOString(),
    kind: event.kind,
    outcome: event.outcome,
    // Written before anything is sent, and itself answers nobody: what the
    // caller was sent is the status of the request's own record.
    status: null,
    ...requestSubject(api, route, trace),
    approval: event.approval,
    latency: { totalMs: elapsedMs(trace.started) },
  };
  try {
    await deps.telemetry.span('record', () => deps.sink.append(draft));
  } catch {
    throw new Refusal(503, 'unavailable', 'unavailable', 'the approval could not be recorded');
  }
}
