// Kubernetes projected service-account tokens. The identity is the one the
// API server itself would give the caller: subject
// `system:serviceaccount:<namespace>:<name>` and groups `system:serviceaccounts`
// and `system:serviceaccounts:<namespace>`, read from the `kubernetes.io` claim.
import { z } from 'zod';
import { AuthError } from './identity.ts';
import type { KeySource } from './jwks.ts';
import { type TokenVerifier, verifyJwt } from './jwt.ts';

/** The algorithms the kube-apiserver signs service-account tokens with (RSA or ECDSA keys). */
export const serviceAccountAlgorithms = ['RS256', 'ES256', 'ES384'] as const;

export const SERVICE_ACCOUNTS_GROUP = 'system:serviceaccounts';

const kubernetesClaimSchema = z.looseObject({
  namespace: z.string().min(1),
  serviceaccount: z.looseObject({ name: z.string().min(1), uid: z.string().optional() }),
});

export interface ServiceAccountVerifierConfig {
  issuer: string;
  audiences: readonly string[];
}

export function createServiceAccountVerifier(
  config: ServiceAccountVerifierConfig,
  keys: KeySource,
  clockSkewSeconds: number,
): TokenVerifier {
  const requirements = {
    issuer: config.issuer,
    audiences: config.audiences,
    algorithms: serviceAccountAlgorithms,
    clockSkewSeconds,
  };
  return {
    issuer: config.issuer,
    async verify(token, now) {
      const claims = await verifyJwt(token, keys.getKey, requirements, now);
      const account = kubernetesClaimSchema.safeParse(claims['kubernetes.io']);
      if (!account.success) {
        throw new AuthError('invalid_claims', '"kubernetes.io" claim lacks a namespace and service account');
      }
      const { namespace, serviceaccount } = account.data;
      const subject = `system:serviceaccount:${namespace}:${serviceaccount.name}`;
      // The API server writes both; a token where they disagree was not minted by it.
      if (claims.sub !== subject)
        throw new AuthError('invalid_claims', '"sub" does not match the "kubernetes.io" claim');
      return {
        identity: {
          issuer: config.issuer,
          subject,
          groups: [SERVICE_ACCOUNTS_GROUP, `${SERVICE_ACCOUNTS_GROUP}:${namespace}`],
          kind: 'serviceaccount',
        },
        expiresAt: claims.exp,
      };
    },
  };
}
