// Step 4 of the request path, "Approve": a request an approval rule matches is
// held as an EmbeddingApproval at the controller until people decide.
//
// - No `x-veil-approval` header: the sidecar opens an approval (a masked
//   summary and counts, never inputs). Mode `hold` long-polls for the decision
//   up to the rule's holdTimeoutSeconds, consumes an approval and forwards;
//   mode `deferred` answers 202 at once with the approval id.
// - `x-veil-approval: <namespace>/<name>`: the caller retries with an approval
//   it was given; the sidecar consumes it for this caller and this payload.
// - No controller, or one that cannot be asked: 503, never forwarded.
// - One caller is held at most the policy's approvals.maxPendingPerCaller times
//   at once in this sidecar (each hold pins its body in memory), and has about
//   as many approvals Pending at the controller (each is kept past its expiry):
//   beyond either, 429 with Retry-After, nothing opened or forwarded.
// - All held requests together keep at most half the proxy's body budget
//   (heldBodyShare): callers never held keep the other half whoever is held.
//   A hold beyond it is refused the same way.
//
// Each approval opened, and each decision observed on it, is recorded before
// the request goes on (see evidence.ts); besides, the sidecar follows each
// approval it opened until it is settled, whoever still waits (follow.ts). A
// decision is observed only on an approval the controller confirms is this
// caller's: one this request opened, or one whose use was refused for its
// phase rather than for its caller or payload. A replay by someone else never
// puts their name on the approval's trail.
//
// The payload digest binds an approval to one caller and one payload, under
// the policy and rule that held it. Its message is
//   JSON.stringify(["veil-approval-payload/v2", policy, rule, api, issuer, subject, model])
//   + "\n" + body
// where body is the exact bytes forwarded to the model, after forward masking.
// The JSON header cannot contain a newline, so the encoding is unambiguous.
// With the workload's shared hash key the digest is
//   "hmac-sha256:" + hex HMAC-SHA256(hash key, message),
// as audit records digest inputs: whoever can read the EmbeddingApproval
// (approvers, anyone with get on it) cannot test guesses of a short input
// against it. Without one it is "sha256:" + hex SHA-256(message): a key of this
// process alone would fail every retry that reaches another replica, and a
// restarted one. The retry must therefore send the same body and reach a
// sidecar holding the same hash key (as `hash` forward masking needs anyway):
// while a rotated key rolls out, one reaching a pod on the other key is refused
// as another payload, and asks anew. Policy and rule are in it because the
// controller takes the approvers from them: an approval granted under a lax
// rule (another pod's policy, or a rule an opener chose) is no approval for a
// request a stricter rule holds.
import { createHash, createHmac, type Hash, type Hmac } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ApprovalRule, RecordOutcome, UseApprovalRequest } from '@veil/core';
import type { Identity } from '../auth/identity.ts';
import type { HashKey } from '../hashkey.ts';
import type { ProxyReply } from '../proxy/pipeline.ts';
import type { Trace } from '../proxy/record.ts';
import { JSON_HEADERS, Refusal } from '../proxy/refusal.ts';
import {
  type ApprovalsClient,
  type ApprovalView,
  isPendingQuota,
  type UseRefusalReason,
  type UseResult,
} from './client.ts';
import {
  decisionEvents,
  isoMillis,
  MAX_REASON,
  MAX_SUBJECT,
  type RecordApproval,
  type RecordedDecisions,
} from './evidence.ts';

export const APPROVAL_HEADER = 'x-veil-approval';

/** Longest single long poll; a hold is a series of them up to its timeout. */
const MAX_POLL_SECONDS = 60;
const SUMMARY_PREVIEW = 200;
/** A slot frees when people decide, which no clock predicts: a hint, not a promise. */
const QUOTA_RETRY_AFTER_SECONDS = 30;
/**
 * The least time between two asks after one approval: a controller answers a
 * long poll at once, still Pending, when the pod has as many as it serves.
 */
const MIN_POLL_INTERVAL_MS = 1000;

const dnsLabel = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export interface HoldRequest {
  readonly client: ApprovalsClient | undefined;
  readonly podName: string;
  readonly policyName: string;
  readonly rule: ApprovalRule;
  readonly api: string;
  readonly identity: Identity;
  readonly model: string;
  readonly inputCount: number;
  /** The bytes that would be forwarded (after forward masking). */
  readonly body: Buffer | string;
  /** What the request's body holds of the proxy's body memory: all it was sent, read whole. */
  readonly bodyBytes: number;
  readonly headers: IncomingHttpHeaders;
  /** Records the approval's events; a failure fails the request closed. */
  readonly record: RecordApproval;
  /** The decisions this sidecar recorded already. */
  readonly decisions: RecordedDecisions;
  /** The requests this sidecar holds, per caller. */
  readonly held: HeldRequests;
  /** The sidecar's hash key: the payload digest is keyed with it only when it is shared (header comment). */
  readonly hashKey: HashKey;
  /** The policy's approvals.maxPendingPerCaller. */
  readonly maxPendingPerCaller: number;
  /** Aborts when the held caller goes away: the hold ends, and the approval is left unused. */
  readonly signal?: AbortSignal;
  /**
   * Aborts when the sidecar begins to stop: the hold ends at once, answered, so the
   * audit stream is closed within the pod's grace period; the approval is left unused.
   */
  readonly stopping?: AbortSignal;
}

export type Held = { reply: ProxyReply; outcome: RecordOutcome };

/** Why a hold was not given a slot: the caller's are taken, or held bodies fill their share. */
export type HoldRefusal = 'caller' | 'bodies';

/**
 * How many requests this sidecar holds for each caller (issuer and subject)
 * now, and the body bytes all of them keep.
 */
export class HeldRequests {
  /** The most body bytes all held requests together keep; see the header comment. */
  readonly maxBodyBytes: number;
  readonly #counts = new Map<string, number>();
  #bodyBytes = 0;

  constructor(maxBodyBytes: number) {
    this.maxBodyBytes = maxBodyBytes;
  }

  /** Body bytes kept by held requests now. */
  get bodyBytes(): number {
    return this.#bodyBytes;
  }

  /**
   * Takes one of the caller's `limit` slots for a request keeping `bytes`, or
   * says why not. A request alone may pass the share, as with the body budget:
   * a policy allowing larger bodies is never refused for good.
   */
  take(identity: Identity, limit: number, bytes: number): HoldRefusal | undefined {
    const key = callerKey(identity);
    const count = this.#counts.get(key) ?? 0;
    if (count >= limit) return 'caller';
    if (this.#bodyBytes > 0 && this.#bodyBytes + bytes > this.maxBodyBytes) return 'bodies';
    this.#counts.set(key, count + 1);
    this.#bodyBytes += bytes;
    return undefined;
  }

  release(identity: Identity, bytes: number): void {
    const key = callerKey(identity);
    const count = (this.#counts.get(key) ?? 0) - 1;
    if (count > 0) this.#counts.set(key, count);
    else this.#counts.delete(key);
    this.#bodyBytes -= bytes;
  }
}

function callerKey(identity: Identity): string {
  return JSON.stringify([identity.issuer, identity.subject]);
}

/** What, besides the caller and the payload, an approval is for: see the header comment. */
export type ApprovalScope = { policy: string; rule: string; api: string };

/** See the header comment: keyed with `hashKey` when it is the workload's shared key. */
export function payloadDigest(
  scope: ApprovalScope,
  identity: Identity,
  model: string,
  body: Buffer | string,
  hashKey: HashKey,
): string {
  const keyed = hashKey.shared;
  const hash: Hash | Hmac = keyed ? createHmac('sha256', hashKey.key) : createHash('sha256');
  const { policy, rule, api } = scope;
  hash.update(
    JSON.stringify(['veil-approval-payload/v2', policy, rule, api, identity.issuer, identity.subject, model]),
  );
  hash.update('\n');
  hash.update(body);
  return `${keyed ? 'hmac-sha256' : 'sha256'}:${hash.digest('hex')}`;
}

/**
 * What approvers are shown: counts and the model, plus the first input only as
 * the audit record itself keeps it (audit-masked text); never the raw input.
 * Model and input are cut, so the summary stays within what an approval keeps
 * (MAX_APPROVAL_SUMMARY) whatever the caller sent: one longer is never opened.
 */
export function approvalSummary(trace: Trace, bytes: number): string {
  const counts = `${trace.inputCount} input(s), ${bytes} bytes, model ${preview(trace.model ?? '?')}`;
  const first = trace.inputs?.[0];
  if (first === undefined || !('masked' in first)) return counts;
  return `${counts}; first input (audit-masked): ${JSON.stringify(preview(first.masked))}`;
}

function preview(text: string): string {
  return text.length <= SUMMARY_PREVIEW ? text : `${text.slice(0, SUMMARY_PREVIEW)}…`;
}

/**
 * Holds the request until it may be forwarded (resolves undefined), answers it
 * now (deferred: a 202), or throws a Refusal. Fills `trace.approval`.
 */
export async function holdForApproval(hold: HoldRequest, trace: Trace): Promise<Held | undefined> {
  const { client, rule } = hold;
  if (client === undefined) {
    throw new Refusal(
      503,
      'unavailable',
      'unavailable',
      `approval required by rule ${rule.name}, but no controller is configured to hold it`,
    );
  }
  const scope = { policy: hold.policyName, rule: rule.name, api: hold.api };
  const digest = payloadDigest(scope, hold.identity, hold.model, hold.body, hold.hashKey);
  const presented = headerValue(hold.headers, APPROVAL_HEADER);
  if (presented !== undefined) return usePresented(client, hold, presented, digest, trace);
  if (rule.mode === 'deferred') return deferred(await open(client, hold, digest, trace));
  return inSlot(hold, async () => {
    const opened = await open(client, hold, digest, trace);
    const decided = await waitForDecision(client, hold, opened, trace);
    return consume(client, hold, decided, digest, trace);
  });
}

/** Runs one hold in a slot of the caller's, freed however the hold ends. */
async function inSlot<T>(hold: HoldRequest, held: () => Promise<T>): Promise<T> {
  const bytes = keptBytes(hold);
  const refused = hold.held.take(hold.identity, hold.maxPendingPerCaller, bytes);
  if (refused !== undefined) throw slotRefusal(hold, refused);
  try {
    return await held();
  } finally {
    hold.held.release(hold.identity, bytes);
  }
}

/**
 * The body bytes a held request keeps: what it was sent, however it came
 * (chunked too), or what it forwards if that is more.
 */
function keptBytes(hold: HoldRequest): number {
  return Math.max(hold.bodyBytes, Buffer.byteLength(hold.body));
}

function slotRefusal(hold: HoldRequest, why: HoldRefusal): Refusal {
  const but =
    why === 'caller'
      ? `${hold.maxPendingPerCaller} request(s) of this caller are held for approval already ` +
        '(approvals.maxPendingPerCaller)'
      : `the requests held for approval in this proxy keep ${hold.held.bodyBytes} bytes of bodies, ` +
        `and may keep ${hold.held.maxBodyBytes} (half its body budget)`;
  return new Refusal(
    429,
    'rate_limited',
    'rate_limited',
    `approval required by rule ${hold.rule.name}, but ${but}; send this one once one of them is decided`,
    { 'retry-after': String(QUOTA_RETRY_AFTER_SECONDS) },
  );
}

/** Opens an approval for the request and records that it did. */
async function open(
  client: ApprovalsClient,
  hold: HoldRequest,
  digest: string,
  trace: Trace,
): Promise<ApprovalView> {
  const { rule } = hold;
  const opened = await ask(rule, () =>
    client.open({
      policy: hold.policyName,
      rule: rule.name,
      pod: { name: hold.podName },
      requester: {
        issuer: hold.identity.issuer,
        subject: hold.identity.subject,
        groups: hold.identity.groups.filter((group) => group !== ''),
      },
      request: {
        api: hold.api,
        model: hold.model,
        inputCount: hold.inputCount,
        bytes: Buffer.byteLength(hold.body),
        ...operation(rule, hold.headers),
        digest,
        summary: approvalSummary(trace, Buffer.byteLength(hold.body)),
      },
    }),
  );
  trace.approval = approvalRef(opened, trace.time);
  await hold.record({
    kind: 'approval.requested',
    outcome: 'held',
    approval: { ...trace.approval, approvers: [] },
  });
  await recordDecisions(hold, opened, trace);
  return opened;
}

/**
 * Long-polls until the approval is decided or the rule's hold timeout passes.
 * A caller that hangs up ends the wait: the approval is not used for nobody,
 * and stays there for the caller to present later.
 */
async function waitForDecision(
  client: ApprovalsClient,
  hold: HoldRequest,
  view: ApprovalView,
  trace: Trace,
): Promise<ApprovalView> {
  const { rule } = hold;
  const signals = [hold.signal, hold.stopping].filter((signal) => signal !== undefined);
  const ended = signals.length === 0 ? undefined : AbortSignal.any(signals);
  const deadline = performance.now() + rule.holdTimeoutSeconds * 1000;
  let current = view;
  while (current.phase === 'Pending' && !ended?.aborted) {
    const remaining = (deadline - performance.now()) / 1000;
    if (remaining <= 0) break;
    const seconds = Math.max(1, Math.min(MAX_POLL_SECONDS, Math.ceil(remaining)));
    const asked = performance.now();
    try {
      current = await ask(rule, () => client.wait(view.namespace, view.name, seconds, ended));
      if (current.phase === 'Pending') await pause(asked + MIN_POLL_INTERVAL_MS - performance.now(), ended);
    } catch (error) {
      if (ended?.aborted) break;
      throw error;
    }
    trace.approval = approvalRef(current, trace.time);
    await recordDecisions(hold, current, trace);
  }
  if (hold.signal?.aborted) throw callerGone(current);
  if (hold.stopping?.aborted) throw stoppedWhileHeld(current);
  return current;
}

/** Waits `ms` (nothing if not positive), rejecting early once `signal` aborts. */
async function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  if (ms <= 0) return;
  await sleep(ms, undefined, signal === undefined ? {} : { signal });
}

/** Nobody hears this answer; it is what the request's record says happened. */
function callerGone(view: ApprovalView): Refusal {
  const id = idOf(view);
  return new Refusal(
    499,
    'approval_required',
    'held',
    `the caller went away while held for approval ${id}; send the same request with ${APPROVAL_HEADER}: ${id}`,
    { [APPROVAL_HEADER]: id },
  );
}

function stoppedWhileHeld(view: ApprovalView): Refusal {
  const id = idOf(view);
  return new Refusal(
    503,
    'unavailable',
    'held',
    `the proxy is stopping; send the same request again with ${APPROVAL_HEADER}: ${id}`,
    { [APPROVAL_HEADER]: id, 'retry-after': '1' },
  );
}

/** A decided (or still pending) approval: consumes it and forwards, or refuses. */
async function consume(
  client: ApprovalsClient,
  hold: HoldRequest,
  view: ApprovalView,
  digest: string,
  trace: Trace,
): Promise<undefined> {
  const id = idOf(view);
  switch (view.phase) {
    case 'Denied':
      throw denied(view);
    case 'Expired':
      throw new Refusal(
        403,
        'approval_required',
        'approval_expired',
        `approval ${id} expired before it was approved; send the request again to ask anew`,
        { [APPROVAL_HEADER]: id },
      );
    case 'Pending':
      // Still open to a decision: the request is held, not refused for good.
      throw new Refusal(
        403,
        'approval_required',
        'held',
        `approval ${id} was not decided within ${hold.rule.holdTimeoutSeconds} s; once it is approved, ` +
          `send the same request with ${APPROVAL_HEADER}: ${id}`,
        { [APPROVAL_HEADER]: id },
      );
    case 'Approved':
      break;
  }
  const used = await ask(hold.rule, () => client.use(view.namespace, view.name, useBody(hold, digest)));
  return afterUse(client, hold, view.namespace, view.name, used, trace);
}

async function usePresented(
  client: ApprovalsClient,
  hold: HoldRequest,
  presented: string,
  digest: string,
  trace: Trace,
): Promise<Held | undefined> {
  const [namespace, name, ...rest] = presented.split('/');
  if (
    namespace === undefined ||
    name === undefined ||
    rest.length > 0 ||
    !dnsLabel.test(namespace) ||
    !dnsLabel.test(name)
  ) {
    throw new Refusal(
      400,
      'invalid_request',
      'invalid',
      `${APPROVAL_HEADER} must be NAMESPACE/NAME of an approval`,
      {},
      APPROVAL_HEADER,
    );
  }
  const used = await ask(hold.rule, () => client.use(namespace, name, useBody(hold, digest)));
  if (!used.ok && used.reason === 'Pending' && used.approval !== undefined) {
    // Not decided yet: the caller is held again, or told again to come back.
    trace.approval = approvalRef(used.approval, trace.time);
    await recordDecisions(hold, used.approval, trace);
    if (hold.rule.mode === 'deferred') return deferred(used.approval);
    const pending = used.approval;
    return inSlot(hold, async () => {
      const decided = await waitForDecision(client, hold, pending, trace);
      return consume(client, hold, decided, digest, trace);
    });
  }
  return afterUse(client, hold, namespace, name, used, trace);
}

/**
 * The request in hand as the approval was opened for it: the controller refuses
 * an approval whose approvers were shown anything else.
 */
function useBody(hold: HoldRequest, digest: string): UseApprovalRequest {
  return {
    requester: { issuer: hold.identity.issuer, subject: hold.identity.subject },
    digest,
    policy: hold.policyName,
    rule: hold.rule.name,
    request: {
      api: hold.api,
      model: hold.model,
      inputCount: hold.inputCount,
      bytes: Buffer.byteLength(hold.body),
      ...operation(hold.rule, hold.headers),
    },
  };
}

/** Refusals for the approval's phase: the controller checks caller and payload first. */
const phaseRefusals = new Set<UseRefusalReason>(['Pending', 'Denied', 'Expired', 'used']);

async function afterUse(
  client: ApprovalsClient,
  hold: HoldRequest,
  namespace: string,
  name: string,
  used: UseResult,
  trace: Trace,
): Promise<undefined> {
  const id = `${namespace}/${name}`;
  if (used.ok) {
    trace.approval = approvalRef(used.approval, trace.time);
    await recordDecisions(hold, used.approval, trace);
    return undefined;
  }
  const view = await refusedView(client, hold, namespace, name, used, trace);
  switch (used.reason) {
    case 'Denied':
      throw view
        ? denied(view)
        : new Refusal(403, 'forbidden', 'approval_denied', `approval ${id} was denied`);
    case 'Expired':
      throw new Refusal(
        403,
        'approval_required',
        'approval_expired',
        `approval ${id} has expired; send the request again without ${APPROVAL_HEADER} to ask anew`,
      );
    case 'Pending':
      // Nobody denied anything: the request is held, as one whose hold timed out.
      throw new Refusal(
        403,
        'approval_required',
        'held',
        `approval ${id} is not decided yet; once it is approved, send the same request with ${APPROVAL_HEADER}: ${id}`,
        { [APPROVAL_HEADER]: id },
      );
    case 'rule':
      // The remedy of an expired approval: ask anew.
      throw new Refusal(
        403,
        'approval_required',
        'approval_expired',
        `approval ${id} was granted under a version of its rule the policy no longer holds; send the request again without ${APPROVAL_HEADER} to ask anew`,
      );
    default: {
      const why =
        used.reason === 'identity'
          ? 'it was granted to another caller'
          : used.reason === 'digest'
            ? 'it was granted for another payload'
            : used.reason === 'used'
              ? 'it was already used'
              : used.status === 404
                ? 'no such approval'
                : used.message;
      throw new Refusal(403, 'forbidden', 'approval_denied', `approval ${id} cannot be used: ${why}`);
    }
  }
}

/**
 * The approval a use was refused for, as the record names it. Refused for its
 * phase, the approval is this caller's (the controller checks caller and
 * payload first): it is read, its decisions recorded. Refused for its caller
 * or payload, or unknown, it is someone else's, so the record names its id
 * only: its approvers decided on nothing this caller asked.
 */
async function refusedView(
  client: ApprovalsClient,
  hold: HoldRequest,
  namespace: string,
  name: string,
  used: Extract<UseResult, { ok: false }>,
  trace: Trace,
): Promise<ApprovalView | undefined> {
  if (!phaseRefusals.has(used.reason)) {
    trace.approval = {
      id: `${namespace}/${name}`.slice(0, MAX_SUBJECT),
      approvers: [],
      requestedAt: trace.time,
    };
    return undefined;
  }
  const view = used.approval ?? (await client.wait(namespace, name, 0).catch(() => undefined));
  if (view !== undefined) {
    trace.approval = approvalRef(view, trace.time);
    await recordDecisions(hold, view, trace);
  }
  return view;
}

function deferred(view: ApprovalView): Held {
  const id = idOf(view);
  return {
    reply: {
      status: 202,
      headers: { ...JSON_HEADERS, [APPROVAL_HEADER]: id },
      body: JSON.stringify({
        approval: { id, status: 'Pending' },
        message:
          `held for approval until ${view.expiresAt}; once approved, send the same request with ` +
          `${APPROVAL_HEADER}: ${id}`,
      }),
    },
    outcome: 'held',
  };
}

function denied(view: ApprovalView): Refusal {
  const deny = view.decisions.find((decision) => decision.decision === 'deny');
  const by = deny ? ` by ${deny.approver}` : '';
  return new Refusal(403, 'forbidden', 'approval_denied', `approval ${idOf(view)} was denied${by}`);
}

/**
 * A controller that cannot be asked, or answers nonsense, fails the request
 * closed; one that refuses for the caller's quota tells the caller to slow down.
 */
async function ask<T>(rule: ApprovalRule, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    const message = (error as Error).message ?? 'unknown error';
    if (isPendingQuota(error)) {
      throw new Refusal(
        429,
        'rate_limited',
        'rate_limited',
        `approval required by rule ${rule.name}, but ${message}`.slice(0, 240),
        { 'retry-after': String(QUOTA_RETRY_AFTER_SECONDS) },
      );
    }
    throw new Refusal(
      503,
      'unavailable',
      'unavailable',
      `approval required by rule ${rule.name}, but ${message}`.slice(0, 240),
      { 'retry-after': '5' },
    );
  }
}

function idOf(view: ApprovalView): string {
  return `${view.namespace}/${view.name}`;
}

/** The record's `approval`: who decided what, from the controller's answer. */
export function approvalRef(view: ApprovalView, fallbackRequestedAt: string): NonNullable<Trace['approval']> {
  const phaseDecision = view.phase === 'Denied' ? 'deny' : 'approve';
  const approvers = view.decisions
    .filter((decision) => decision.decision === phaseDecision)
    .flatMap((decision) => {
      const time = isoMillis(decision.time);
      if (time === undefined) return [];
      return [
        {
          subject: decision.approver.slice(0, MAX_SUBJECT),
          time,
          ...(decision.reason ? { reason: decision.reason.slice(0, MAX_REASON) } : {}),
        },
      ];
    });
  const decidedAt = isoMillis(view.decidedAt);
  return {
    id: idOf(view).slice(0, MAX_SUBJECT),
    approvers,
    requestedAt: isoMillis(view.requestedAt) ?? fallbackRequestedAt,
    ...(decidedAt === undefined ? {} : { decidedAt }),
  };
}

/** Records each decision on `view` (and its expiry) not recorded yet by this sidecar. */
async function recordDecisions(hold: HoldRequest, view: ApprovalView, trace: Trace): Promise<void> {
  for (const { key, event } of decisionEvents(view, trace.time)) {
    await hold.decisions.once(key, () => hold.record(event));
  }
}

function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const raw = headers[name];
  const value = Array.isArray(raw) ? raw[0] : raw;
  const trimmed = value?.trim();
  return trimmed === '' ? undefined : trimmed;
}

/** The operation value that made the rule hold the request, for the approvers. */
function operation(rule: ApprovalRule, headers: IncomingHttpHeaders): { operation?: string } {
  const wanted = rule.when.operation;
  if (wanted === undefined) return {};
  const raw = headers[wanted.header.toLowerCase()];
  const sent = (Array.isArray(raw) ? raw : raw === undefined ? [] : [raw])
    .flatMap((value) => value.split(','))
    .map((value) => value.trim());
  const match = sent.find((value) => wanted.values.includes(value));
  return match === undefined ? {} : { operation: match.slice(0, 253) };
}
