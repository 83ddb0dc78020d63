// Why a request got no answer at all, as the socket said it: the line a user
// reads instead of "fetch failed".

const networkCodes = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);

/** The socket error's code (ECONNREFUSED …) among the error's causes; undefined if none is a network failure. */
export function networkCode(error: unknown): string | undefined {
  // Node wraps the socket error as `cause`, sometimes twice (AggregateError for dual-stack hosts).
  let current: unknown = error;
  for (let depth = 0; depth < 4 && current; depth++) {
    const candidate = current as { code?: unknown; cause?: unknown; errors?: unknown[] };
    if (typeof candidate.code === 'string' && networkCodes.has(candidate.code)) return candidate.code;
    current = candidate.cause ?? candidate.errors?.[0];
  }
  return undefined;
}
