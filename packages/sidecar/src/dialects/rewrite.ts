import { DialectError, type TextSlot } from './types.ts';

/**
 * A copy of `body` with `texts` in the slot, shaped as the caller sent them. A count that differs
 * from what the body carries would misalign vectors and inputs, so it is refused. The other fields
 * are kept as sent: the dialect's strict schema let through only options that carry no text.
 */
export function putTexts(
  body: unknown,
  slot: TextSlot | null,
  carried: number,
  texts: readonly string[],
): Record<string, unknown> {
  if (typeof body !== 'object' || body === null)
    throw new DialectError(400, 'request body must be a JSON object');
  if (texts.length !== carried) {
    throw new DialectError(500, `${texts.length} texts cannot replace the ${carried} the request carries`);
  }
  if (slot === null) return { ...body };
  return { ...body, [slot.field]: slot.single ? texts[0] : [...texts] };
}
