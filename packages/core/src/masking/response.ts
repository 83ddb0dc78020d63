// Masking named fields of a response body. Only the objects on the way to a
// changed string are copied; everything else, vectors included, is shared with
// the original and never walked.

export type MaskString = (text: string, field: string) => string;

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

const child = (field: string, key: string): string => (field === '' ? key : `${field}.${key}`);

/** The array with each item mapped, copied only if an item changed. */
function mapItems(node: readonly unknown[], map: (item: unknown, i: number) => unknown): readonly unknown[] {
  let copy: unknown[] | undefined;
  for (let i = 0; i < node.length; i++) {
    const item: unknown = node[i];
    const mapped = map(item, i);
    if (mapped !== item) {
      copy ??= node.slice();
      copy[i] = mapped;
    }
  }
  return copy ?? node;
}

/** The object with each own value mapped, copied only if a value changed. */
function mapValues(
  node: Record<string, unknown>,
  map: (value: unknown, key: string) => unknown,
): Record<string, unknown> {
  let copy: Record<string, unknown> | undefined;
  for (const key of Object.keys(node)) {
    const value = node[key];
    const mapped = map(value, key);
    if (mapped === value) continue;
    copy ??= { ...node };
    // Defined, not assigned: assigning a key named __proto__ would set the prototype.
    Object.defineProperty(copy, key, { value: mapped, enumerable: true, writable: true, configurable: true });
  }
  return copy ?? node;
}

/**
 * Every string at the end of a path, however deep in arrays and objects it
 * sits: a named field is masked whole, whatever shape it has. Below it, the
 * recorded field writes each key as `*`: those keys are the model's, and a
 * model could put anything in a key, a value included.
 */
function maskLeaf(node: unknown, field: string, maskString: MaskString): unknown {
  if (typeof node === 'string') return maskString(node, field);
  if (Array.isArray(node)) return mapItems(node, (item, i) => maskLeaf(item, `${field}[${i}]`, maskString));
  if (isRecord(node)) return mapValues(node, (value) => maskLeaf(value, child(field, '*'), maskString));
  return node;
}

/**
 * Masks the strings at `path` (dotted keys) below node. Arrays met on the way,
 * arrays in arrays too, are crossed element by element, so `data.text`
 * reaches every `data[i].text` and `data[i][j].text`.
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
    return mapItems(node, (item, i) =>
      isRecord(item) || Array.isArray(item)
        ? maskAtPath(item, path, depth, `${field}[${i}]`, maskString)
        : item,
    );
  }
  if (!isRecord(node) || !Object.hasOwn(node, key)) return node;
  const value = node[key];
  const masked = maskAtPath(value, path, depth + 1, child(field, key), maskString);
  return masked === value ? node : { ...node, [key]: masked };
}

/**
 * Whether an object holding `key` is met from node, crossing arrays as
 * `maskAtPath` does. JSON.parse keeps the last of keys written twice, so where
 * the parsed body holds no object with the first key of a path, its text holds
 * none either, on that path or under a duplicate left out: the rules name
 * nothing in it.
 */
export function reaches(node: unknown, key: string): boolean {
  if (Array.isArray(node)) return node.some((item) => typeof item === 'object' && reaches(item, key));
  return isRecord(node) && Object.hasOwn(node, key);
}
