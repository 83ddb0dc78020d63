import assert from 'node:assert/strict';
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
