import type { MaskingAction, RecordOutcome } from '@veil/core';
import type { ApprovalEvent } from '../approvals/evidence.ts';
import type { AuditDraft } from '../audit/sink.ts';
import type { Identity } from '../auth/identity.ts';
import type { ApiName, Dialect } from '../dialects/index.ts';
import type { ActivePolicy } from '../policy/active.ts';
import type { PipelineDeps, ProxyReply } from './pipeline.ts';
import { Refusal, refusalReply } from './refusal.ts';

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

export async function record(
  deps: PipelineDeps,
  dialect: Dialect,
  api: ApiName | 'passthrough' | 'unknown',
  route: string,
  trace: Trace,
  reply: ProxyReply,
  outcome: RecordOutcome,
  error: string | undefined,
): Promise<ProxyReply> {
  const draft: AuditDraft = {
    time: trace.time,
    kind: 'request',
    outcome,
    status: reply.status,
    identity: trace.identity ? recordedIdentity(trace.identity) : null,
    policy: trace.policy ? { name: trace.policy.name, hash: trace.policy.hash } : null,
    api,
    route: clip(route),
    model: trace.model === null ? null : clip(trace.model),
    inputCount: trace.inputCount,
    inputs: trace.inputs,
    masking: trace.masking,
    approval: trace.approval,
    latency: { ...trace.latency, totalMs: performance.now() - trace.started },
    vectors: trace.vectors,
    error: error ? error.slice(0, MAX_ERROR) : undefined,
  };
  deps.telemetry.requestDone(api, outcome, trace.masking, trace.latency.upstreamMs);
  try {
    await deps.telemetry.span('record', () => deps.sink.append(draft));
  } catch {
    // A response whose record is not durable must not be released.
    return refusalReply(
      dialect,
      new Refusal(503, 'unavailable', 'unavailable', 'the request could not be recorded'),
    );
  }
  return reply;
}

/**
 * An `approval.*` record of the request in `trace`, appended while the request
 * waits. Like the request's own record it is durable before the request goes
 * on, or the request fails closed.
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
    identity: trace.identity ? recordedIdentity(trace.identity) : null,
    policy: trace.policy ? { name: trace.policy.name, hash: trace.policy.hash } : null,
    api,
    route: clip(route),
    model: trace.model === null ? null : clip(trace.model),
    inputCount: trace.inputCount,
    approval: event.approval,
    latency: { totalMs: performance.now() - trace.started },
  };
  try {
    await deps.telemetry.span('record', () => deps.sink.append(draft));
  } catch {
    throw new Refusal(503, 'unavailable', 'unavailable', 'the approval could not be recorded');
  }
}
