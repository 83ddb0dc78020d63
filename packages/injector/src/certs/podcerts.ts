// The admin-port PKI: the controller's Ed25519 signing key doubles as the CA
// that certifies each injected pod's sidecar. Nothing new to keep secret or to
// distribute: every replica holds the key, and each builds the same CA
// certificate from it byte for byte (fixed name, serial and validity; Ed25519
// signs deterministically), so each trusts what the other issued. Replacing the
// key replaces the CA: sidecars then fetch a certificate from the new one.
import type { KeyObject } from 'node:crypto';
import { certificateAuthorityForKey, issueServerCertificate } from './x509.ts';

/** The DNS name a pod's admin certificate carries, and the name the controller checks: `<pod UID>.pod.veil.internal`. */
export function podServerName(podUid: string): string {
  return `${podUid}.pod.veil.internal`;
}

/** A pod UID fits a DNS label as Kubernetes makes it (a lowercase UUID). */
const podUidPattern = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** Long enough that a sidecar renewing at half-life rides out a controller outage of half a day. */
const podCertificateLifetimeMs = 24 * 3_600_000;
/** Tolerates a sidecar whose clock runs behind the controller's. */
const backdateMs = 5 * 60_000;

// The CA never expires on its own: it lives exactly as long as the key.
const caValidity = {
  notBefore: new Date('2020-01-01T00:00:00Z'),
  notAfter: new Date('9999-12-31T23:59:59Z'),
};

export type PodCertificate = { cert: string; notAfter: Date };

export interface PodCertificateAuthority {
  /** PEM; what the controller trusts sidecars' admin ports by, and hands them beside their certificate. */
  readonly caCert: string;
  /** A server certificate naming `podServerName(podUid)` for the sidecar's public key. */
  issue(publicKey: KeyObject, podUid: string, now?: Date): PodCertificate;
}

/** `key`: the controller's Ed25519 private key; `kid`: its RFC 7638 thumbprint (base64url). */
export function podCertificateAuthority(key: KeyObject, kid: string): PodCertificateAuthority {
  const serial = Buffer.from(kid, 'base64url').subarray(0, 16);
  // A positive, non-zero leading byte: DER INTEGERs are signed, and RFC 5280 wants serials positive.
  serial[0] = (serial[0] ?? 0) & 0x7f || 0x01;
  const caCert = certificateAuthorityForKey(key, `veil-controller ${kid}`, serial, caValidity);
  return {
    caCert,
    issue(publicKey, podUid, now = new Date()) {
      if (!podUidPattern.test(podUid)) throw new Error('a pod UID must be a DNS label');
      const notBefore = new Date(now.getTime() - backdateMs);
      const notAfter = new Date(now.getTime() + podCertificateLifetimeMs);
      const cert = issueServerCertificate({ cert: caCert, key }, publicKey, [podServerName(podUid)], {
        notBefore,
        notAfter,
      });
      return { cert, notAfter };
    },
  };
}
