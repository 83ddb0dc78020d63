// Options shared by the evidence commands, validated with zod so that every
// bad value is refused with the option's name before anything runs.
import { z } from 'zod';
import { CliError } from '../command.ts';

const dayMs = 86_400_000;

/**
 * An endpoint is printed in errors and kept in bucket.json: one holding a
 * user, a password or a query (a presigned token) is refused, and never
 * echoed. Its trailing `/` is dropped, so the same endpoint written either
 * way is the same source.
 */
const endpoint = z
  .url({ protocol: /^https?$/, error: 'must be an http(s) URL' })
  .refine(hasNoSecrets, {
    error:
      'must not hold a user, password, query or fragment: give credentials in AWS_ACCESS_KEY_ID and its secret',
    abort: true,
  })
  .transform(normaliseEndpoint);

function hasNoSecrets(url: string): boolean {
  // Zod runs this on a value its URL check already refused: that refusal is the one reported.
  const parsed = URL.parse(url);
  return parsed === null || (parsed.username === '' && parsed.password === '' && !/[?#]/.test(url));
}

function normaliseEndpoint(url: string): string {
  return url.replace(/\/+$/, '');
}

/** Whether two endpoints kept in bucket.json name the same one, whether or not either ends in `/`. */
export function sameEndpoint(a: string | null, b: string | null): boolean {
  return a === null || b === null ? a === b : normaliseEndpoint(a) === normaliseEndpoint(b);
}

const days = z
  .string()
  .regex(/^\d+$/, 'must be a whole number of days')
  .transform(Number)
  .pipe(z.int().max(36_500, 'must be at most 36500 days'));

/** An instant (RFC 3339) or a whole UTC day (YYYY-MM-DD). */
const when = z.union([z.iso.datetime({ offset: true }), z.iso.date()], {
  error: 'must be RFC 3339 (2025-06-01T12:00:00Z) or a date (2025-06-01)',
});

export const s3OptionsSchema = z.object({
  endpoint: endpoint.optional(),
  region: z.string().min(1).optional(),
  'path-style': z.boolean().default(false),
});

export const pullOptionsSchema = s3OptionsSchema.extend({
  bucket: z.string({ error: 'is required' }).min(1, 'is required'),
  prefix: z.string().default('v1/'),
  from: when.optional(),
  to: when.optional(),
  out: z.string({ error: 'is required' }).min(1, 'is required'),
});

export const verifyOptionsSchema = s3OptionsSchema.extend({
  'min-retention-days': days.optional(),
  'trusted-keys': z.string().min(1).optional(),
  json: z.boolean().default(false),
});

export const sessionsShowOptionsSchema = z.object({
  dir: z.string().min(1).default('.'),
  'trusted-keys': z.string().min(1).optional(),
});

export const reportOptionsSchema = s3OptionsSchema.extend({
  html: z.string().min(1).optional(),
  json: z.string().min(1).optional(),
  'csv-dir': z.string().min(1).optional(),
  'min-retention-days': days.optional(),
  'trusted-keys': z.string().min(1).optional(),
});

/** Parses `values` with `schema`; the first problem becomes a usage error naming its option. */
export function validateOptions<S extends z.ZodType>(
  command: string,
  schema: S,
  values: unknown,
): z.output<S> {
  const result = schema.safeParse(values);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const option = issue?.path.length ? `--${issue.path.join('.')} ` : '';
  throw new CliError(
    `${command}: ${option}${issue?.message ?? 'invalid options'} (see veil ${command} --help)`,
  );
}

/** Object times selected: `from` ≤ t < `before`. */
export type TimeWindow = { from: Date | undefined; before: Date | undefined };

// The window is kept in bucket.json as RFC 3339, whose years have four digits,
// and a window ends up to a day after its `--to`.
const earliest = Date.parse('0000-01-01T00:00:00Z');
const latest = Date.parse('9999-12-31T00:00:00Z');

/** `--to` names the last instant, or the last whole day, that is still inside the window. */
export function timeWindow(command: string, from: string | undefined, to: string | undefined): TimeWindow {
  const start = (time: string) => Date.parse(time.length === 10 ? `${time}T00:00:00Z` : time);
  for (const [option, time] of [
    ['from', from],
    ['to', to],
  ] as const) {
    if (time === undefined) continue;
    const at = start(time);
    if (!(at >= earliest && at < latest)) {
      throw new CliError(`${command}: --${option} must be 0000-01-01 or later and before 9999-12-31`);
    }
  }
  const window = {
    from: from === undefined ? undefined : new Date(start(from)),
    before: to === undefined ? undefined : new Date(start(to) + (to.length === 10 ? dayMs : 1)),
  };
  if (window.from && window.before && window.from >= window.before) {
    throw new CliError(`${command}: --from must come before --to`);
  }
  return window;
}

export function inWindow(window: TimeWindow, time: Date | undefined): boolean {
  if (!time) return window.from === undefined && window.before === undefined;
  return (!window.from || time >= window.from) && (!window.before || time < window.before);
}

/** `s3://BUCKET/PREFIX` → bucket and prefix (the evidence root `v1/` when none is given). */
export function parseS3Url(command: string, url: string): { bucket: string; prefix: string } {
  const match = /^s3:\/\/([^/]+)(?:\/(.*))?$/.exec(url);
  if (!match?.[1]) throw new CliError(`${command}: "${url}" is not s3://BUCKET/PREFIX`);
  return { bucket: match[1], prefix: match[2] || 'v1/' };
}
