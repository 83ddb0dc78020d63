import assert from 'node:assert/strict';
import type { z } from 'zod';
import { DialectError } from '../../src/dialects/index.ts';

/** Asserts that `run` throws a DialectError with `status` and a message matching `message`. */
export function assertDialectError(run: () => unknown, status: number, message: RegExp): DialectError {
  let caught: unknown;
  try {
    run();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof DialectError, `expected a DialectError, got ${String(caught)}`);
  assert.equal(caught.status, status);
  assert.match(caught.message, message);
  return caught;
}

/** Base64 of little-endian float32 values, as OpenAI's `encoding_format: base64` sends them. */
export function float32Base64(values: readonly number[]): string {
  const bytes = Buffer.alloc(values.length * 4);
  values.forEach((value, i) => {
    bytes.writeFloatLE(value, i * 4);
  });
  return bytes.toString('base64');
}

/** A JSON list of `count` items, the last one `last`, parsed as the proxy parses a body. */
export function jsonList(count: number, item: string, last = item): unknown[] {
  return JSON.parse(`[${`${item},`.repeat(count - 1)}${last}]`);
}

/** About 1 MiB of JSON list, the default request size limit: `jsonList` with as many items as fit. */
export function mebibyteList(item: string, last = item): unknown[] {
  return jsonList(Math.floor((1024 * 1024) / (item.length + 1)), item, last);
}

/**
 * Every issue `schema` finds in `body`, union branches included. A bad list must cost one issue,
 * not one an item: half a million of them ran the sidecar out of memory.
 */
export function issueCount(schema: z.ZodType, body: unknown): number {
  const result = schema.safeParse(body);
  return result.success ? 0 : countIssues(result.error.issues);
}

function countIssues(issues: readonly z.core.$ZodIssue[]): number {
  let count = 0;
  for (const issue of issues) {
    count += 1;
    if (issue.code === 'invalid_union') for (const branch of issue.errors) count += countIssues(branch);
  }
  return count;
}
