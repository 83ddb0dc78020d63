// The controller's approvals API as the sidecar calls it (see the controller's
// controller/approvals.ts and its routes in controller/approvals/): open an
// approval for a held request, long-poll for its decision, and consume it for
// one requester and payload.
//
// The sidecar authenticates with its pod's projected service-account token
// (audience `veil-controller`). The kubelet rotates that file, so it is read
// again on every call rather than once at start. Every answer is validated:
// anything the sidecar cannot read is treated as the controller being
// unavailable, and the request path then fails closed.
import type { UseApprovalRequest } from '@veil/core';
import type { ApprovalView } from './approvalview.ts';
import { asView, isGoneAnswer, quotaMessage, refused, useRefusal } from './controlleranswers.ts';
import { type ControllerClientOptions, ControllerConnection, TIMEOUT_MS } from './controllerconnection.ts';
import { ApprovalGoneError, PendingQuotaError } from './controllererrors.ts';

export { type ApprovalView, approvalViewSchema } from './approvalview.ts';
export type { ControllerClientOptions } from './controllerconnection.ts';
export {
  ApprovalGoneError,
  ControllerUnavailableError,
  isApprovalGone,
  isPendingQuota,
  PendingQuotaError,
} from './controllererrors.ts';

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

export async function controllerApprovalsClient(options: ControllerClientOptions): Promise<ApprovalsClient> {
  const connection = new ControllerConnection(options);
  return {
    open: (body) => openApproval(connection, body),
    wait: (namespace, name, waitSeconds, signal) =>
      waitForApproval(connection, namespace, name, waitSeconds, signal),
    use: (namespace, name, body) => useApproval(connection, namespace, name, body),
    close: () => connection.close(),
  };
}

async function openApproval(connection: ControllerConnection, body: OpenApproval): Promise<ApprovalView> {
  const { status, json } = await connection.send('POST', '/v1/approvals', body, TIMEOUT_MS);
  if (status === 429) throw new PendingQuotaError(quotaMessage(json));
  if (status !== 201 && status !== 200) refused(status, json, 'open the approval');
  return asView(status, json, 'the open');
}

async function waitForApproval(
  connection: ControllerConnection,
  namespace: string,
  name: string,
  waitSeconds: number,
  signal: AbortSignal | undefined,
): Promise<ApprovalView> {
  const wait = Math.max(0, Math.min(600, Math.ceil(waitSeconds)));
  const { status, json } = await connection.send(
    'GET',
    `${approvalPath(namespace, name)}?wait=${wait}`,
    undefined,
    wait * 1000 + TIMEOUT_MS,
    signal,
  );
  if (status === 404 && isGoneAnswer(json, namespace, name))
    throw new ApprovalGoneError(`the controller has no approval ${namespace}/${name}`);
  if (status !== 200) refused(status, json, `return approval ${namespace}/${name}`);
  return asView(status, json, 'the long poll');
}

async function useApproval(
  connection: ControllerConnection,
  namespace: string,
  name: string,
  body: UseApprovalRequest,
): Promise<UseResult> {
  const { status, json } = await connection.send(
    'POST',
    `${approvalPath(namespace, name)}/use`,
    body,
    TIMEOUT_MS,
  );
  if (status === 200) return { ok: true, approval: asView(status, json, 'the use') };
  if (status === 403 || status === 404 || status === 409) return useRefusal(status, json);
  return refused(status, json, 'use the approval');
}

function approvalPath(namespace: string, name: string): string {
  return `/v1/approvals/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`;
}
