// Masking named fields of a response body. Only the objects on the way to a
// changed string are copied; everything else, vectors included, is shared with
// the original and never walked.

export type MaskString = (text: string, field: string) => string;

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

const child = (field: string, key: string): string => (field === '' ? key : `${field}.${key}`);

/** A string, or the strings of an array, at the end of a path. */
function maskLeaf(node: unknown, field: string, maskString: MaskString): unknown {
  if (typeof node === 'string') return maskString(node, field);
  if (!Array.isArray(node)) return node;
  let copy: unknown[] | undefined;
  for (let i = 0; i < node.length; i++) {
    const item: unknown = node[i];
    if (typeof item !== 'string') continue;
    const masked = maskString(item, `${field}[${i}]`);
    if (masked !== item) {
      copy ??= node.slice();
      copy[i] = masked;
    }
  }
  return copy ?? node;
}

/**
 * Masks the strings at `path` (dotted keys) below node. Arrays met on the way
 * are crossed element by element, so `data.text` reaches every `data[i].text`.
 */
export function maskAtPath(
  node: unknown,
  path: readonly string[],
  depth: number,
  field: string,
  maskString: MaskString,
): unknown {
  const key = path[depth];
  if (key === undefined) return maskLeaf(node, field, maskString);
  if (Array.isArray(node)) {
    let copy: unknown[] | undefined;
    for (let i = 0; i < node.length; i++) {
      const item: unknown = node[i];
      if (!isRecord(item)) continue;
      const masked = maskAtPath(item, path, depth, `${field}[${i}]`, maskString);
      if (masked !== item) {
        copy ??= node.slice();
        copy[i] = masked;
      }
    }
    return copy ?? node;
  }
  if (!isRecord(node) || !Object.hasOwn(node, key)) return node;
  const value = node[key];
  const masked = maskAtPath(value, path, depth + 1, child(field, key), maskString);
  return masked === value ? node : { ...node, [key]: masked };
}
