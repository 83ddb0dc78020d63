// AdmissionRequests for EmbeddingApprovals, as the API server sends them to the
// approvals webhook.
import { approvalSpec } from '../../../../core/test/support/approvals.ts';
import type { AdmissionRequest } from '../../../src/webhook/review.ts';

const target = {
  kind: { group: 'veil.dev', version: 'v1alpha1', kind: 'EmbeddingApproval' },
  resource: { group: 'veil.dev', version: 'v1alpha1', resource: 'embeddingapprovals' },
  name: 'a1',
  namespace: 'ml',
};

/** `username` approving the pending approval ml/a1 (alice's request, or `spec`) through its status. */
export function approvalByUser(
  username: string,
  uid = 'u1',
  spec: object = approvalSpec(),
): AdmissionRequest {
  const oldObject = {
    metadata: { name: 'a1' },
    spec,
    status: { phase: 'Pending', decisions: [] },
  };
  return {
    ...target,
    uid,
    operation: 'UPDATE',
    subResource: 'status',
    userInfo: { username, groups: ['approvers'] },
    oldObject,
    object: { ...oldObject, status: { decisions: [{ decision: 'approve', reason: 'mine' }] } },
  };
}
