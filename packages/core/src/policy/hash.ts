import { createHash } from 'node:crypto';
import canonicalize from 'canonicalize';
import type { PolicySpec } from './schema.ts';

/**
 * The content hash a sidecar ACKs and every audit record carries: SHA-256 of
 * the RFC 8785 canonical JSON of the validated spec (defaults applied), so two
 * spellings of the same policy hash alike.
 */
export function policyHash(spec: PolicySpec): string {
  const canonical = canonicalize(spec);
  if (canonical === undefined) throw new Error('policy spec cannot be canonicalized');
  return `sha256:${createHash('sha256').update(canonical).digest('hex')}`;
}
