// Mutate, then diff: the webhook never builds patch operations by hand, so the patch
// is exactly the difference between the pod it was sent and the pod `inject` made.
import type { V1Pod } from '@kubernetes/client-node';
import jsonpatch, { type Operation } from 'fast-json-patch';

export type JsonPatch = Operation[];

/** RFC 6902 operations turning `original` into `mutated`; empty when they are equal. */
export function podPatch(original: V1Pod, mutated: V1Pod): JsonPatch {
  return jsonpatch.compare(original, mutated);
}

/** The AdmissionReview `patch` field: base64 of the JSON patch, or nothing for no change. */
export function encodePatch(patch: JsonPatch): string | undefined {
  return patch.length === 0 ? undefined : Buffer.from(JSON.stringify(patch)).toString('base64');
}
