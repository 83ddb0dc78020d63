// The controller's Ed25519 signing key. It signs the short-lived token that
// authorises one policy push to one sidecar, bound to the policy pushed (its name
// and content hash) or to the revocation of a deleted policy (its name), and
// usable once (its `jti`); sidecars verify it against the
// public half, which the controller publishes next to them (see publish.ts).
// The same key is the CA of the sidecars' admin-port certificates
// (certs/podcerts.ts), so pushes go over TLS without another secret.
// The private JWK is read from a file: a mounted Secret in a cluster.
import { createPrivateKey, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type JWK, SignJWT } from 'jose';
import { z } from 'zod';
import { type PodCertificateAuthority, podCertificateAuthority } from '../certs/podcerts.ts';

/** The `iss` sidecars require of a push (the sidecar's CONTROLLER_ISSUER). */
export const controllerIssuer = 'veil-controller';

/** A push is for one pod: a token minted for another cannot be replayed there. */
export function sidecarAudience(podUid: string): string {
  return `veil-sidecar:${podUid}`;
}

/** The longest a push token lives; short, since a captured one could replay a push to its pod. */
export const maxTokenLifetimeSeconds = 60;

// Tolerates a sidecar whose clock runs a little behind, which would otherwise see
// `iat` in the future and refuse the push.
const issuedAtSkewSeconds = 5;

const privateJwkSchema = z.looseObject({
  kty: z.literal('OKP'),
  crv: z.literal('Ed25519'),
  x: z.string().min(1),
  d: z.string().min(1),
});

export type PushClaims = {
  /** The pod UID the push is for. */
  podUid: string;
  /** Which controller replica pushes; sidecars may log it. */
  subject: string;
} & (
  | {
      /**
       * The policy the push carries: its name and content hash (`policyHash` of the
       * validated spec). TLS shows the controller which pod answers; the token
       * shows the sidecar what the push authorises, the transport having no say.
       */
      policy: PushedPolicy;
    }
  | {
      /**
       * The policy a revocation drops: its name, and the version the controller
       * last saw the pod enforce, so a revocation that arrives late cannot drop a
       * version pushed after it (the policy re-created). A sidecar takes a
       * revocation only with this claim, and a push only with `policy`, so
       * neither token stands in for the other.
       */
      revoke: RevokedPolicy;
    }
);

/** The `policy` claim of a push token, which the sidecar compares with the body it receives. */
export type PushedPolicy = { name: string; hash: string };

/** The `revoke` claim of a revocation token, which the sidecar compares with the policy it enforces. */
export type RevokedPolicy = { name: string; hash: string };

export interface ControllerKey {
  /** Key id: the RFC 7638 thumbprint of the public key. */
  readonly kid: string;
  /** What sidecars verify pushes with: `{kty, crv, x, kid, alg, use}`, never `d`. */
  readonly publicJwk: JWK;
  /** A push (or revocation) token for one pod; `exp - iat` is `lifetimeSeconds`, at most 60. */
  sign(claims: PushClaims, lifetimeSeconds?: number): Promise<string>;
  /** The CA of the sidecars' admin ports, built from this key. */
  readonly authority: PodCertificateAuthority;
}

/** Reads the private JWK from `file`; fails on anything but an Ed25519 private key. */
export async function loadControllerKey(file: string): Promise<ControllerKey> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new Error(`controller key ${file} is not readable JSON: ${(error as Error).message}`);
  }
  return controllerKeyFromJwk(json);
}

export async function controllerKeyFromJwk(jwk: unknown): Promise<ControllerKey> {
  const parsed = privateJwkSchema.safeParse(jwk);
  // The issue list names fields only: a key's values must never reach a log.
  if (!parsed.success) {
    const fields = parsed.error.issues.map((issue) => issue.path.join('.') || '(key)').join(', ');
    throw new Error(`the controller key must be an Ed25519 private JWK (bad: ${fields})`);
  }
  const { kty, crv, x, d } = parsed.data;
  const privateKey = await importJWK({ kty, crv, x, d }, 'EdDSA');
  const kid = await calculateJwkThumbprint({ kty, crv, x });
  const publicJwk: JWK = { kty, crv, x, kid, alg: 'EdDSA', use: 'sig' };
  const authority = podCertificateAuthority(
    createPrivateKey({ key: { kty, crv, x, d }, format: 'jwk' }),
    kid,
  );
  return {
    kid,
    publicJwk,
    authority,
    async sign(claims, lifetimeSeconds = maxTokenLifetimeSeconds) {
      // exp - iat never exceeds the maximum, the backdating included.
      const lifetime = Math.min(Math.max(issuedAtSkewSeconds + 1, lifetimeSeconds), maxTokenLifetimeSeconds);
      const issuedAt = Math.floor(Date.now() / 1000) - issuedAtSkewSeconds;
      const bound =
        'policy' in claims
          ? { policy: { name: claims.policy.name, hash: claims.policy.hash } }
          : { revoke: { name: claims.revoke.name, hash: claims.revoke.hash } };
      return new SignJWT(bound)
        .setProtectedHeader({ alg: 'EdDSA', kid, typ: 'JWT' })
        .setIssuer(controllerIssuer)
        .setAudience(sidecarAudience(claims.podUid))
        .setSubject(claims.subject)
        .setJti(randomUUID())
        .setIssuedAt(issuedAt)
        .setExpirationTime(issuedAt + lifetime)
        .sign(privateKey);
    },
  };
}

/** A new private JWK, for a chart's pre-install hook or a test. */
export async function generateControllerJwk(): Promise<JWK> {
  const { privateKey } = await generateKeyPair('Ed25519', { extractable: true });
  return { ...(await exportJWK(privateKey)), alg: 'EdDSA' };
}
