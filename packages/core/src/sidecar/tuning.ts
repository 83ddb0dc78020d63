// The sidecar's operational settings an operator may tune: the injector reads
// them from the chart and writes them into each sidecar's environment, and the
// sidecar reads them back from there. One schema, so a value the sidecar would
// refuse is refused when the injector starts, not as pods that crash.
import { z } from 'zod';

/** A duration in whole milliseconds up to `max`; from the environment, a string of digits. */
const milliseconds = (max: number) => z.coerce.number().int().min(1).max(max).optional();

export const sidecarTuningSchema = z
  .object({
    upstreamTimeoutMs: milliseconds(600_000).describe(
      'How long the model may take to start and to finish its answer (default 60 s)',
    ),
    bodyIdleTimeoutMs: milliseconds(600_000).describe(
      'How long a request body being read may pause before the request is refused 408 (default 10 s)',
    ),
    bodyTimeoutMs: milliseconds(600_000).describe(
      'How long reading a whole request body may take before the request is refused 408 (default 30 s)',
    ),
    requestTimeoutMs: milliseconds(3_600_000).describe(
      "How long a caller may take to send a whole request, head and body, before its connection is closed: Node's backstop behind the body timeouts (default 60 s)",
    ),
    bodyMemoryBytes: z.coerce
      .number()
      .int()
      .min(64 * 1024)
      .optional()
      .describe(
        'Request bodies held at once, across all callers; past it new requests get 503 with Retry-After (default 16 MiB). A request alone may pass it',
      ),
    spoolCapacityBytes: z.coerce
      .number()
      .int()
      .min(64 * 1024)
      .optional()
      .describe(
        'The audit spool: once this many bytes wait to be shipped, new requests get 503 (default 1 GiB)',
      ),
    auditCloseGraceSeconds: z.coerce
      .number()
      .min(0)
      .optional()
      .describe(
        "On shutdown, how long to keep shipping and close the stream (default 20); keep it under the pod's terminationGracePeriodSeconds",
      ),
  })
  .strict();

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
