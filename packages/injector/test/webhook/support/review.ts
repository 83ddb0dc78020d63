import type { V1Pod } from '@kubernetes/client-node';
import type { AdmissionReviewRequest } from '../../../src/webhook/review.ts';

let counter = 0;

/** An AdmissionReview as the API server sends it for a pod. */
export function podReview(
  namespace: string,
  pod: V1Pod,
  operation: 'CREATE' | 'UPDATE' | 'DELETE' = 'CREATE',
  oldPod?: V1Pod,
): AdmissionReviewRequest {
  counter += 1;
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: `00000000-0000-4000-8000-${String(counter).padStart(12, '0')}`,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      namespace,
      ...(pod.metadata?.name === undefined ? {} : { name: pod.metadata.name }),
      operation,
      userInfo: {
        username: 'system:serviceaccount:kube-system:replicaset-controller',
        groups: ['system:authenticated'],
      },
      object: operation === 'DELETE' ? null : pod,
      ...(oldPod === undefined ? {} : { oldObject: oldPod }),
      dryRun: false,
    },
  };
}
