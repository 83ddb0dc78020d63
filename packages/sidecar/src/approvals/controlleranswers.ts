import { missingApprovalError } from '@veil/core';
import { z } from 'zod';
import { type ApprovalView, approvalViewSchema } from './approvalview.ts';
import type { UseRefusalReason, UseResult } from './client.ts';
import { ControllerUnavailableError } from './controllererrors.ts';

const errorSchema = z.object({ error: z.string().optional(), reason: z.string().optional() }).loose();
const useReasons = new Set<string>(['identity', 'digest', 'used', 'rule', 'Pending', 'Denied', 'Expired']);

/**
 * Whether a 404 is the controller's own answer for an approval it does not
 * have: a 404 for a wrong path (a misconfigured URL, a proxy in between) must
 * not pass for every approval being gone, or the follower would drop them all.
 */
export function isGoneAnswer(json: unknown, namespace: string, name: string): boolean {
  const said = errorSchema.safeParse(json);
  return said.success && said.data.error === missingApprovalError(namespace, name);
}

export function refused(status: number, json: unknown, what: string): never {
  const said = errorSchema.safeParse(json);
  const error = said.success && said.data.error ? `: ${said.data.error.slice(0, 160)}` : '';
  throw new ControllerUnavailableError(`the controller refused to ${what} (${status}${error})`);
}

export function quotaMessage(json: unknown): string {
  const said = errorSchema.safeParse(json);
  const error = said.success ? said.data.error : undefined;
  return (error ?? 'the caller has too many approvals Pending').slice(0, 200);
}

export function asView(status: number, json: unknown, what: string): ApprovalView {
  const view = approvalViewSchema.safeParse(json);
  if (!view.success)
    throw new ControllerUnavailableError(`the controller's answer to ${what} is invalid (${status})`);
  return view.data;
}

/** A use the controller refused (403, 404, 409): its reason, its message, and the approval if it sent it. */
export function useRefusal(status: 403 | 404 | 409, json: unknown): Extract<UseResult, { ok: false }> {
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
