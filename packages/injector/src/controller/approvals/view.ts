// An approval as the approvals API answers it: what sidecars see of it.
import { type ApprovalView, approvalView } from '@veil/core';
import type { Stored } from './store.ts';

export function view(
  stored: Stored,
  rule: { holdTimeoutSeconds: number; mode: 'hold' | 'deferred' } | undefined,
): ApprovalView {
  const created = stored.metadata.creationTimestamp;
  return approvalView(
    {
      namespace: stored.metadata.namespace,
      name: stored.metadata.name,
      createdAt: created instanceof Date ? created.toISOString() : created,
      spec: stored.spec,
      status: stored.status,
    },
    rule,
  );
}
