// What the caller hears when the model answers an embedding request with an
// error. The model's own body is never passed on: it is in the model's API,
// not necessarily the caller's (`auto` in front of TEI answers an Ollama caller
// with TEI's errors), its Content-Type is anyone's guess, and its message may
// quote the inputs back. The caller gets an error in its own dialect instead,
// so its SDK raises the usual error, and the record says `upstream_error`
// with the status the caller got. So does a call that brought no answer at
// all (upstreamFailureRefusal), on every route.
import type { ErrorCode } from '../dialects/index.ts';
import type { UpstreamError, UpstreamResponse } from '../upstream.ts';
import { Refusal } from './refusal.ts';

/**
 * Statuses a model gives for the caller's own request, which the caller can
 * act on (fix the body, send less, wait), so they are passed on.
 */
const callerFaults: ReadonlyMap<number, ErrorCode> = new Map([
  [400, 'invalid_request'],
  [404, 'not_found'],
  [413, 'too_large'],
  [422, 'invalid_request'],
  [429, 'rate_limited'],
]);

/** A 401 or 403 from the model judges Veil's own call: the caller authenticated to Veil, not to the model. */
const refusedVeil: ReadonlySet<number> = new Set([401, 403]);

/** Delta-seconds, or an IMF-fixdate as RFC 9110 writes it: nothing else of the model's header goes out. */
const retryAfterForms = [/^\d{1,9}$/, /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/];

export function upstreamStatusRefusal(response: Pick<UpstreamResponse, 'status' | 'retryAfter'>): Refusal {
  const { status } = response;
  const code = callerFaults.get(status);
  if (code !== undefined) {
    return new Refusal(
      status,
      code,
      'upstream_error',
      `the model refused the request (HTTP ${status})`,
      status === 429 ? retryAfterHeader(response.retryAfter) : {},
    );
  }
  const message = refusedVeil.has(status)
    ? `the model refused Veil's call (HTTP ${status})`
    : `the model failed (HTTP ${status})`;
  return new Refusal(502, 'upstream_error', 'upstream_error', message);
}

function retryAfterHeader(value: string | undefined): Record<string, string> {
  const trimmed = value?.trim();
  if (trimmed === undefined || !retryAfterForms.some((form) => form.test(trimmed))) return {};
  return { 'retry-after': trimmed };
}

/**
 * A call that brought no answer to pass on: a model too slow is a 504, one
 * out of reach or answering past the call's bound a 502. A call the caller's
 * hang-up ended is answered to nobody (499, as for a caller gone mid-body):
 * it is what the record says happened.
 */
export function upstreamFailureRefusal(error: UpstreamError): Refusal {
  switch (error.kind) {
    case 'timeout':
      return new Refusal(504, 'upstream_timeout', 'upstream_error', error.message);
    case 'cancelled':
      return new Refusal(499, 'invalid_request', 'invalid', error.message);
    default:
      return new Refusal(502, 'upstream_error', 'upstream_error', error.message);
  }
}
