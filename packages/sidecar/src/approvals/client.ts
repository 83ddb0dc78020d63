// The controller's approvals API as the sidecar calls it (see the controller's
// controller/approvals.ts): open an approval for a held request, long-poll for
// its decision, and consume it for one requester and payload.
//
// The sidecar authenticates with its pod's projected service-account token
// (audience `veil-controller`). The kubelet rotates that file, so it is read
// again on every call rather than once at start. Every answer is validated:
// anything the sidecar cannot read is treated as the controller being
// unavailable, and the request path then fails closed.
import { readFile } from 'node:fs/promises';
import { missingApprovalError, type UseApprovalRequest } from '@veil/core';
import { type Dispatcher, request } from 'undici';
import { z } from 'zod';
import { ControllerAgent } from '../controllerca.ts';

const decisionSchema = z.object({
  approver: z.string().min(1),
  decision: z.enum(['approve', 'deny']),
  reason: z.string(),
  time: z.string().min(1),
});

/** The controller's view of one approval; unknown fields are ignored. */
export const approvalViewSchema = z.object({
  namespace: z.string().min(1),
  name: z.string().min(1),
  phase: z.enum(['Pending', 'Approved', 'Denied', 'Expired']),
  expiresAt: z.string().min(1),
  requestedAt: z.string().min(1).optional(),
  decidedAt: z.string().min(1).optional(),
  usedAt: z.string().min(1).optional(),
  decisions: z.array(decisionSchema).default([]),
});
export type ApprovalView = z.infer<typeof approvalViewSchema>;

/** `POST /v1/approvals`: a masked summary and counts, never inputs. */
export interface OpenApproval {
  readonly policy: string;
  readonly rule: string;
  readonly pod: { readonly name: string };
  readonly requester: { readonly issuer: string; readonly subject: string; readonly groups: string[] };
  readonly request: {
    readonly api: string;
    readonly model: string;
    readonly inputCount: number;
    readonly bytes: number;
    readonly operation?: string;
    readonly digest: string;
    readonly summary?: string;
  };
}

/** Why the controller refused a use; `Pending`, `Denied`, `Expired` are the approval's phase. */
/** `rule`: the policy's rule has changed, or is gone, since the approval was opened. */
export type UseRefusalReason =
  | 'identity'
  | 'digest'
  | 'used'
  | 'rule'
  | 'Pending'
  | 'Denied'
  | 'Expired'
  | 'unknown';

export type UseResult =
  | { ok: true; approval: ApprovalView }
  | {
      ok: false;
      /** 403 wrong caller or payload, 404 no such approval, 409 not usable now. */
      status: 403 | 404 | 409;
      reason: UseRefusalReason;
      message: string;
      approval: ApprovalView | undefined;
    };

export interface ApprovalsClient {
  /**
   * Rejects with an error whose `status` is 429 (a PendingQuotaError, or alike)
   * when the requester has as many approvals Pending as the policy allows; with
   * any other, the controller is unavailable.
   */
  open(body: OpenApproval): Promise<ApprovalView>;
  /**
   * The approval once decided, or as it stands after `waitSeconds`; `signal`
   * ends the wait early (the held caller went away), rejecting. Rejects with
   * an error whose `status` is 404 (an ApprovalGoneError, or alike) when the
   * approval does not exist.
   */
  wait(namespace: string, name: string, waitSeconds: number, signal?: AbortSignal): Promise<ApprovalView>;
  /** `body`: what this request is, checked against what approvers were shown. */
  use(namespace: string, name: string, body: UseApprovalRequest): Promise<UseResult>;
  close(): Promise<void>;
}

/** The controller could not be asked, or answered something unusable: fail closed. */
export class ControllerUnavailableError extends Error {
  override name = 'ControllerUnavailableError';
}

/** The controller has no such approval (any more): the sweep deleted it, or it never was. */
export class ApprovalGoneError extends ControllerUnavailableError {
  override name = 'ApprovalGoneError';
  readonly status = 404;
}

/** A refusal of `wait` because the approval does not exist, by any ApprovalsClient. */
export function isApprovalGone(error: unknown): boolean {
  return (error as { status?: unknown } | undefined)?.status === 404;
}

/** The requester has as many approvals Pending as the policy allows: none is opened. */
export class PendingQuotaError extends Error {
  override name = 'PendingQuotaError';
  readonly status = 429;
}

/** A refusal of `open` for the requester's quota, by any ApprovalsClient. */
export function isPendingQuota(error: unknown): boolean {
  return (error as { status?: unknown } | undefined)?.status === 429;
}

export interface ControllerClientOptions {
  /** The approvals API, e.g. https://veil-injector.veil-system.svc:8445 */
  readonly url: string;
  /** The projected service-account token; read on every call. */
  readonly tokenFile: string;
  /** PEM CA bundle for the controller's serving certificate; the system roots when unset. */
  readonly caFile?: string;
}

/** For a connection and for any answer but a long poll's, which gets it on top of its wait. */
const TIMEOUT_MS = 10_000;

const errorSchema = z.object({ error: z.string().optional(), reason: z.string().optional() }).loose();
const useReasons = new Set<string>(['identity', 'digest', 'used', 'rule', 'Pending', 'Denied', 'Expired']);

/**
 * Whether a 404 is the controller's own answer for an approval it does not
 * have: a 404 for a wrong path (a misconfigured URL, a proxy in between) must
 * not pass for every approval being gone, or the follower would drop them all.
 */
function isGoneAnswer(json: unknown, namespace: string, name: string): boolean {
  const said = errorSchema.safeParse(json);
  return said.success && said.data.error === missingApprovalError(namespace, name);
}

export async function controllerApprovalsClient(options: ControllerClientOptions): Promise<ApprovalsClient> {
  // The CA file is read on every call: a missing one fails that call closed, not the start.
  const agent = new ControllerAgent({
    caFile: options.caFile,
    connectTimeoutMs: TIMEOUT_MS,
    keepAliveTimeoutMs: 30_000,
  });
  const base = options.url.replace(/\/+$/, '');

  async function token(): Promise<string> {
    try {
      const text = (await readFile(options.tokenFile, 'utf8')).trim();
      if (text === '') throw new Error('empty');
      return text;
    } catch (error) {
      throw new ControllerUnavailableError(
        `the service-account token for the controller cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
      );
    }
  }

  async function send(
    method: 'GET' | 'POST',
    path: string,
    body: unknown,
    answerTimeoutMs: number,
    signal?: AbortSignal,
  ): Promise<{ status: number; json: unknown }> {
    const bearer = await token();
    let dispatcher: Dispatcher;
    try {
      dispatcher = await agent.get();
    } catch (error) {
      throw new ControllerUnavailableError((error as Error).message);
    }
    let response: Dispatcher.ResponseData;
    try {
      response = await request(`${base}${path}`, {
        method,
        dispatcher,
        headers: {
          authorization: `Bearer ${bearer}`,
          accept: 'application/json',
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        headersTimeout: answerTimeoutMs,
        bodyTimeout: answerTimeoutMs,
        ...(signal === undefined ? {} : { signal }),
      });
    } catch (error) {
      const code = (error as { code?: string }).code ?? (error as Error).message;
      throw new ControllerUnavailableError(`the controller could not be reached (${code})`);
    }
    let json: unknown;
    try {
      json = await response.body.json();
    } catch {
      throw new ControllerUnavailableError(`the controller answered ${response.statusCode} without JSON`);
    }
    return { status: response.statusCode, json };
  }

  function refused(status: number, json: unknown, what: string): never {
    const said = errorSchema.safeParse(json);
    const error = said.success && said.data.error ? `: ${said.data.error.slice(0, 160)}` : '';
    throw new ControllerUnavailableError(`the controller refused to ${what} (${status}${error})`);
  }

  function quotaMessage(json: unknown): string {
    const said = errorSchema.safeParse(json);
    const error = said.success ? said.data.error : undefined;
    return (error ?? 'the caller has too many approvals Pending').slice(0, 200);
  }

  function asView(status: number, json: unknown, what: string): ApprovalView {
    const view = approvalViewSchema.safeParse(json);
    if (!view.success)
      throw new ControllerUnavailableError(`the controller's answer to ${what} is invalid (${status})`);
    return view.data;
  }

  return {
    async open(body) {
      const { status, json } = await send('POST', '/v1/approvals', body, TIMEOUT_MS);
      if (status === 429) throw new PendingQuotaError(quotaMessage(json));
      if (status !== 201 && status !== 200) refused(status, json, 'open the approval');
      return asView(status, json, 'the open');
    },

    async wait(namespace, name, waitSeconds, signal) {
      const wait = Math.max(0, Math.min(600, Math.ceil(waitSeconds)));
      const { status, json } = await send(
        'GET',
        `/v1/approvals/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}?wait=${wait}`,
        undefined,
        wait * 1000 + TIMEOUT_MS,
        signal,
      );
      if (status === 404 && isGoneAnswer(json, namespace, name))
        throw new ApprovalGoneError(`the controller has no approval ${namespace}/${name}`);
      if (status !== 200) refused(status, json, `return approval ${namespace}/${name}`);
      return asView(status, json, 'the long poll');
    },

    async use(namespace, name, body) {
      const { status, json } = await send(
        'POST',
        `/v1/approvals/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}/use`,
        body,
        TIMEOUT_MS,
      );
      if (status === 200) return { ok: true, approval: asView(status, json, 'the use') };
      if (status === 403 || status === 404 || status === 409) {
        const said = errorSchema.safeParse(json);
        const reason = said.success && said.data.reason !== undefined ? said.data.reason : 'unknown';
        const attached = approvalViewSchema.safeParse(
          typeof json === 'object' && json !== null ? (json as { approval?: unknown }).approval : undefined,
        );
        return {
          ok: false,
          status,
          reason: (useReasons.has(reason) ? reason : 'unknown') as UseRefusalReason,
          message: (said.success && said.data.error ? said.data.error : `refused (${status})`).slice(0, 200),
          approval: attached.success ? attached.data : undefined,
        };
      }
      return refused(status, json, 'use the approval');
    },

    close: () => agent.close(),
  };
}
