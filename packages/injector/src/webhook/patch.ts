// Mutate, then diff: the webhook never builds patch operations by hand, so the patch
// is exactly the difference between the pod it was sent and the pod `inject` made.
//
// The diff is fast-json-patch's `compare` (same operations, same order) without
// its deep copy of every added value: the patch is serialised at once and the
// mutated pod is never touched again, so sharing its values is safe, and the
// copies were most of the webhook's CPU time.
import type { V1Pod } from '@kubernetes/client-node';
import type { Operation } from 'fast-json-patch';

export type JsonPatch = Operation[];

/** RFC 6902 operations turning `original` into `mutated`; empty when they are equal. */
export function podPatch(original: V1Pod, mutated: V1Pod): JsonPatch {
  const patch: JsonPatch = [];
  diff(original as unknown as Json, mutated as unknown as Json, '', patch);
  return patch;
}

/** The AdmissionReview `patch` field: base64 of the JSON patch, or nothing for no change. */
export function encodePatch(patch: JsonPatch): string | undefined {
  return patch.length === 0 ? undefined : Buffer.from(JSON.stringify(patch)).toString('base64');
}

type Json = { [key: string]: unknown } | unknown[];

function isContainer(value: unknown): value is Json {
  return typeof value === 'object' && value !== null;
}

/** RFC 6901: `~` and `/` in a key are escaped as `~0` and `~1`. */
function pointerPart(key: string): string {
  return key.includes('/') || key.includes('~') ? key.replace(/~/g, '~0').replace(/\//g, '~1') : key;
}

function keysOf(value: Json): string[] {
  return Array.isArray(value) ? value.map((_, index) => String(index)) : Object.keys(value);
}

function diff(before: Json, after: Json, path: string, patch: JsonPatch): void {
  if (before === after) return;
  const oldKeys = keysOf(before);
  const newKeys = keysOf(after);
  const array = Array.isArray(after);
  const oldValues = before as Record<string, unknown>;
  const newValues = after as Record<string, unknown>;
  let deleted = false;
  // Backwards, so removing array items leaves the indexes still to come valid.
  for (let i = oldKeys.length - 1; i >= 0; i--) {
    const key = oldKeys[i] as string;
    const oldValue = oldValues[key];
    const at = `${path}/${pointerPart(key)}`;
    const newValue = newValues[key];
    if (Object.hasOwn(after, key) && !(newValue === undefined && oldValue !== undefined && !array)) {
      if (
        isContainer(oldValue) &&
        isContainer(newValue) &&
        Array.isArray(oldValue) === Array.isArray(newValue)
      ) {
        diff(oldValue, newValue, at, patch);
      } else if (oldValue !== newValue) {
        patch.push({ op: 'replace', path: at, value: newValue });
      }
    } else if (Array.isArray(before) === array) {
      patch.push({ op: 'remove', path: at });
      deleted = true;
    } else {
      patch.push({ op: 'replace', path, value: after });
    }
  }
  if (!deleted && newKeys.length === oldKeys.length) return;
  for (const key of newKeys) {
    if (!Object.hasOwn(before, key) && newValues[key] !== undefined) {
      patch.push({ op: 'add', path: `${path}/${pointerPart(key)}`, value: newValues[key] });
    }
  }
}
