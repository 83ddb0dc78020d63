import { createHash } from 'node:crypto';
import canonicalize from 'canonicalize';
import type { PolicySpec } from './schema.ts';
import { sidecarPolicySpec } from './sidecar-spec.ts';

/**
 * The content hash a sidecar ACKs and every audit record carries: SHA-256 of
 * the RFC 8785 canonical JSON of the validated spec (defaults applied), so two
 * spellings of the same policy hash alike. It covers what sidecars get: not the
 * approval notification URLs, which never leave the controller, so the
 * controller, the sidecars and `veil policy lint` give one policy one hash.
 */
export function policyHash(spec: PolicySpec): string {
  const canonical = canonicalize(sidecarPolicySpec(spec));
  if (canonical === undefined) throw new Error('policy spec cannot be canonicalized');
  return `sha256:${createHash('sha256').update(canonical).digest('hex')}`;
}
