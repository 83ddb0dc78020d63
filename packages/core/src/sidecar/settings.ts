// Settings the injector writes into each sidecar's environment and the sidecar
// reads back: one schema each, so what the sidecar would refuse stops the
// injector at start instead of crashing every injected pod.
import { z } from 'zod';

/** Whether a URL carries `user:password@`: credentials in clear, and a host hidden behind a prefix. */
export function hasUserinfo(value: string): boolean {
  const url = URL.parse(value);
  return url !== null && (url.username !== '' || url.password !== '');
}

/** Text that is more than white space, trimmed: a blank name would pass as set. */
export const nonBlank = z.string().trim().min(1, 'must not be blank');

/**
 * An S3-compatible endpoint. The AWS SDK ignores user information in it, while
 * the settings ConfigMap and every injected pod's environment would publish it.
 */
export const s3EndpointUrl = z
  .url({ protocol: /^https?$/, error: 'must be an http or https URL' })
  .refine(
    (value) => !hasUserinfo(value),
    'must not carry user information: S3 credentials belong in the credentials Secret',
  );

export const s3BucketName = z
  .string()
  .min(3, 'must be an S3 bucket name (3 to 63 characters)')
  .max(63, 'must be an S3 bucket name (3 to 63 characters)')
  .regex(/^[a-z0-9][a-z0-9.-]*[a-z0-9]$/, 'must be an S3 bucket name');

// A `..` segment reads as a way out of the prefix to anyone listing keys by path.
export const s3KeyPrefix = z
  .string()
  .max(256)
  .regex(/^[A-Za-z0-9._/-]*$/, 'letters, digits, `.`, `_`, `-` and `/` only')
  .refine((prefix) => !prefix.split('/').includes('..'), 'must not hold a `..` segment');
