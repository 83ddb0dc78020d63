// The sidecar's operational settings an operator may tune: the injector reads
// them from the chart and writes them into each sidecar's environment, and the
// sidecar reads them back from there. One schema, so a value the sidecar would
// refuse is refused when the injector starts, not as pods that crash.
import { z } from 'zod';

/** A number that may come as the text of an environment variable. */
type FromEnvironment = z.ZodPreprocess<z.ZodNumber>;

/**
 * A whole number from min to max. From the environment, plain decimal digits
 * only: Number() would also read `0x10`, `1e3` or ` 7 ` as numbers.
 */
export function wholeNumber(min: number, max: number): FromEnvironment {
  const message = `must be a whole number from ${min} to ${max}`;
  return fromText(/^\d+$/, z.number({ error: message }).int(message).min(min, message).max(max, message));
}

/** A number of seconds from min to max; from the environment, decimal digits with an optional fraction. */
export function seconds(min: number, max: number): FromEnvironment {
  const message = `must be a number of seconds from ${min} to ${max}`;
  return fromText(/^\d+(\.\d+)?$/, z.number({ error: message }).min(min, message).max(max, message));
}

/** `number`, also from text spelled as `spelling` allows; any other text fails as not a number. */
function fromText(spelling: RegExp, number: z.ZodNumber): FromEnvironment {
  return z.preprocess(
    (value) => (typeof value === 'string' && spelling.test(value) ? Number(value) : value),
    number,
  );
}

const MiB = 1024 * 1024;

/** The spool's capacity when `spoolCapacityBytes` is unset: the sidecar's, and the disk the injector requests for it. */
export const DEFAULT_SPOOL_CAPACITY_BYTES = 1024 * MiB;

/** How long a sidecar keeps shipping on shutdown when `auditCloseGraceSeconds` is unset: the injector sizes pods' grace by it. */
export const DEFAULT_AUDIT_CLOSE_GRACE_SECONDS = 20;

/** What the sidecar uses for a timeout left unset. */
export const DEFAULT_BODY_TIMEOUT_MS = 30_000;
export const DEFAULT_REQUEST_TIMEOUT_MS = 60_000;

export const sidecarTuningSchema = z
  .object({
    upstreamTimeoutMs: wholeNumber(1, 600_000)
      .optional()
      .describe('How long the model may take, in all, to start and to finish its answer (default 60 s)'),
    bodyIdleTimeoutMs: wholeNumber(1, 600_000)
      .optional()
      .describe(
        'How long a request body being read may pause before the request is refused 408 (default 10 s)',
      ),
    bodyTimeoutMs: wholeNumber(1, 600_000)
      .optional()
      .describe(
        `How long reading a whole request body may take before the request is refused 408 (default ${DEFAULT_BODY_TIMEOUT_MS / 1000} s)`,
      ),
    requestTimeoutMs: wholeNumber(1, 3_600_000)
      .optional()
      .describe(
        `How long a caller may take to send a whole request, head and body, before its connection is closed: Node's backstop behind the body timeouts, so above bodyTimeoutMs (default ${DEFAULT_REQUEST_TIMEOUT_MS / 1000} s)`,
      ),
    // Held in the sidecar's memory: far past any memory limit it is given.
    bodyMemoryBytes: wholeNumber(64 * 1024, 1024 * MiB)
      .optional()
      .describe(
        'Request bodies held at once, across all callers; past it new requests get 503 with Retry-After (default 16 MiB, at most 1 GiB). A request alone may pass it',
      ),
    // Requested as node disk (ephemeral storage) by every injected pod.
    spoolCapacityBytes: wholeNumber(64 * 1024, 1024 * 1024 * MiB)
      .optional()
      .describe(
        'The audit spool: once this many bytes wait to be shipped, new requests get 503 (default 1 GiB, at most 1 TiB)',
      ),
    // A pod's termination grace is its ceiling; an hour is past any sensible
    // one and far below the 2^31 ms a Node timer can wait.
    auditCloseGraceSeconds: seconds(0, 3_600)
      .optional()
      .describe(
        'On shutdown, how long to keep shipping and close the stream (default 20, at most 3600); the injector refuses pods whose terminationGracePeriodSeconds (30 when unset) is below it plus 10',
      ),
  })
  .strict()
  .superRefine(requestAboveBodyTimeout((key) => key));

/**
 * Refuses a request timeout at or below the body timeout: Node would close
 * the connection before the body timeout answers 408 on record. `nameOf`
 * says what each setting is called where it was given.
 */
export function requestAboveBodyTimeout(nameOf: (key: keyof SidecarTuning) => string) {
  return (tuning: Pick<SidecarTuning, 'bodyTimeoutMs' | 'requestTimeoutMs'>, ctx: z.RefinementCtx): void => {
    const body = tuning.bodyTimeoutMs ?? DEFAULT_BODY_TIMEOUT_MS;
    const request = tuning.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    if (request > body) return;
    const unset = (value: number | undefined, fallback: number) =>
      value === undefined ? ` (${fallback} when unset)` : '';
    ctx.addIssue({
      code: 'custom',
      message: `${nameOf('requestTimeoutMs')}${unset(tuning.requestTimeoutMs, DEFAULT_REQUEST_TIMEOUT_MS)} must be above ${nameOf('bodyTimeoutMs')}${unset(tuning.bodyTimeoutMs, DEFAULT_BODY_TIMEOUT_MS)}: the request timeout is the backstop behind the body timeout`,
    });
  };
}

export type SidecarTuning = z.infer<typeof sidecarTuningSchema>;

/** The environment variable that carries each setting. */
export const sidecarTuningEnv = {
  upstreamTimeoutMs: 'VEIL_UPSTREAM_TIMEOUT_MS',
  bodyIdleTimeoutMs: 'VEIL_BODY_IDLE_TIMEOUT_MS',
  bodyTimeoutMs: 'VEIL_BODY_TIMEOUT_MS',
  requestTimeoutMs: 'VEIL_REQUEST_TIMEOUT_MS',
  bodyMemoryBytes: 'VEIL_BODY_MEMORY_BYTES',
  spoolCapacityBytes: 'VEIL_SPOOL_CAPACITY_BYTES',
  auditCloseGraceSeconds: 'VEIL_AUDIT_CLOSE_GRACE_SECONDS',
} as const satisfies Record<keyof SidecarTuning, string>;

/** The settings' raw values from an environment, for `sidecarTuningSchema` to read; unset and empty are left out. */
export function sidecarTuningFromEnv(
  env: Readonly<Record<string, string | undefined>>,
): Record<string, string> {
  const raw: Record<string, string> = {};
  for (const [key, variable] of Object.entries(sidecarTuningEnv)) {
    const value = env[variable];
    if (value) raw[key] = value;
  }
  return raw;
}

/** The environment that carries `tuning`: one variable per setting given. */
export function sidecarTuningToEnv(tuning: SidecarTuning): { name: string; value: string }[] {
  return (Object.keys(sidecarTuningEnv) as (keyof SidecarTuning)[]).flatMap((key) => {
    const value = tuning[key];
    return value === undefined ? [] : [{ name: sidecarTuningEnv[key], value: String(value) }];
  });
}
