// Kubernetes name grammars the webhook validates before they reach the API server,
// so a mistake is reported against the annotation or setting that caused it.
import { z } from 'zod';

export const dnsLabel = z
  .string()
  .max(63)
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a DNS label: lower-case letters, digits and "-"');

export const dnsSubdomain = z
  .string()
  .max(253)
  .regex(
    /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/,
    'must be a DNS subdomain: lower-case letters, digits, "-" and "."',
  );

export const portNumber = z.number().int().min(1).max(65_535);

/** IANA_SVC_NAME, the grammar of container port names. */
export const portName = z
  .string()
  .max(15)
  .regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/, 'must be a port name: lower-case letters, digits and "-"')
  .refine(
    (name) => /[a-z]/.test(name) && !name.includes('--'),
    'must be a port name with a letter and no "--"',
  );

/** A key inside a ConfigMap or Secret. */
export const dataKey = z.string().regex(/^[-._a-zA-Z0-9]+$/, 'must be a ConfigMap or Secret key');
