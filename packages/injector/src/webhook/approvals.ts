// Identity stamping for EmbeddingApproval decisions. Approvers append
// `{decision, reason}` to status.decisions through the status subresource; this
// mutating webhook replaces whatever the body says about who decided and when with
// the API server's own view of the caller (AdmissionReview `request.userInfo`), and
// recomputes the phase. The decision rules are @veil/core's pure
// `stampApprovalStatus` (which `veil dev` applies too); the review wrapper around
// it only parses and answers.
import { isDeepStrictEqual } from 'node:util';
import {
  type ApprovalStampSettings,
  type ApprovalUser,
  approvalSpecSchema,
  stampApprovalStatus,
} from '@veil/core';
import { z } from 'zod';
import type { AdmissionRequest, AdmissionResponse, AdmissionReviewResponse } from './review.ts';

export {
  type ApprovalStampSettings,
  type ApprovalUser,
  phaseOf,
  requesterUsernames,
  type StampInput,
  type StampResult,
  stampApprovalStatus,
} from '@veil/core';

const approvalObjectSchema = z.looseObject({
  metadata: z.looseObject({ name: z.string().optional(), namespace: z.string().optional() }).optional(),
  spec: z.unknown(),
  status: z.unknown().optional(),
});

/**
 * One AdmissionReview for `embeddingapprovals`: CREATE, by the controller only;
 * UPDATE of `status`, or of the object itself, whose spec only the controller
 * may change.
 */
export function reviewApprovalAdmission(
  request: AdmissionRequest,
  settings: ApprovalStampSettings,
  now: Date,
): { review: AdmissionReviewResponse; outcome: 'stamped' | 'denied' | 'ignored'; detail: string } {
  const uid = request.uid;
  if (request.kind.kind === 'EmbeddingApproval' && request.operation === 'CREATE') {
    return reviewCreate(request, settings);
  }
  if (request.kind.kind !== 'EmbeddingApproval' || request.operation !== 'UPDATE') {
    return { review: wrap({ uid, allowed: true }), outcome: 'ignored', detail: request.operation };
  }
  const object = approvalObjectSchema.safeParse(request.object);
  const oldObject = approvalObjectSchema.safeParse(request.oldObject);
  if (!object.success || !oldObject.success) {
    return denied(uid, 400, 'the review carries no EmbeddingApproval');
  }
  const user: ApprovalUser = {
    username: request.userInfo.username ?? '',
    groups: request.userInfo.groups ?? [],
  };
  if (user.username === '') return denied(uid, 403, 'an anonymous user cannot change an approval');
  const isController = settings.controllerUsernames.includes(user.username);

  if (request.subResource === undefined) {
    // The main resource: the spec says what was asked and who may approve it.
    if (!isDeepStrictEqual(object.data.spec, oldObject.data.spec) && !isController) {
      return denied(
        uid,
        403,
        'the spec of an EmbeddingApproval cannot be changed; decide through its status',
      );
    }
    return { review: wrap({ uid, allowed: true }), outcome: 'ignored', detail: 'no spec change' };
  }
  if (request.subResource !== 'status') {
    return { review: wrap({ uid, allowed: true }), outcome: 'ignored', detail: request.subResource };
  }
  // Strictly: a spec field this replica does not know may constrain who may decide.
  const spec = approvalSpecSchema.safeParse(oldObject.data.spec);
  if (!spec.success) return denied(uid, 400, 'the stored EmbeddingApproval has no valid spec');
  const result = stampApprovalStatus({
    spec: spec.data,
    oldStatus: oldObject.data.status,
    newStatus: object.data.status,
    user,
    now,
    settings,
  });
  const name = `${request.namespace ?? ''}/${request.name ?? ''}`;
  if (!result.ok) return denied(uid, 403, `approval ${name}: ${result.message}`);
  const patch = [{ op: 'add', path: '/status', value: result.status }];
  const response: AdmissionResponse = {
    uid,
    allowed: true,
    patchType: 'JSONPatch',
    patch: Buffer.from(JSON.stringify(patch)).toString('base64'),
    ...(result.warnings.length === 0 ? {} : { warnings: result.warnings }),
  };
  return { review: wrap(response), outcome: 'stamped', detail: `${user.username}: ${result.status.phase}` };
}

// The spec names the caller and the payload an approval lets through, and who may
// approve it. Anyone else allowed to create one could open an approval for a real
// caller's payload with approvers of their own choosing: only the controller,
// which builds the spec from the held request and the policy's rule, opens them.
function reviewCreate(request: AdmissionRequest, settings: ApprovalStampSettings) {
  const username = request.userInfo.username ?? '';
  if (!settings.controllerUsernames.includes(username)) {
    return denied(
      request.uid,
      403,
      `EmbeddingApprovals are opened by the Veil controller only, for a request its sidecar holds; ${username || 'an anonymous user'} cannot create one`,
    );
  }
  return {
    review: wrap({ uid: request.uid, allowed: true }),
    outcome: 'ignored' as const,
    detail: 'created by the controller',
  };
}

function denied(uid: string, code: number, message: string) {
  return {
    review: wrap({ uid, allowed: false, status: { code, message } }),
    outcome: 'denied' as const,
    detail: message,
  };
}

function wrap(response: AdmissionResponse): AdmissionReviewResponse {
  return { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response };
}
