// What a sidecar trusts the controller by: its public key (policy pushes) and the CA
// bundle of its serving certificate (pulls, approvals, admin certificates). Both go
// into pod annotations the guard lets no one but the injector's own identity change,
// and reach the sidecar through a downwardAPI volume. Never a ConfigMap or Secret of
// the pod's namespace: the namespace's editors could write those.
import type { JWK } from 'jose';
import type { CaBundleSource } from '../certs/cabundle.ts';
import { veilAnnotations } from './annotations.ts';

export type ControllerTrust = {
  /** The controller's public JWK: `{kty, crv, x, kid, alg, use}`, never `d`. */
  publicJwk: JWK;
  /** The PEM CA bundle of the controller's serving certificate; undefined while unknown. */
  caBundle: string | undefined;
};

/**
 * The trust as this replica holds it now. The webhook writes it and the leader
 * patches it from this one function: two spellings could patch pods back and forth.
 */
export function currentTrust(
  publicJwk: JWK,
  caBundle: Pick<CaBundleSource, 'current'> | undefined,
): ControllerTrust {
  return { publicJwk, caBundle: caBundle?.current() };
}

/** The annotations that carry the trust anchors, guarded on injected pods. */
export const trustAnnotationKeys = [veilAnnotations.controllerKey, veilAnnotations.controllerCa] as const;

/**
 * The annotations an injected pod carries for `trust`. An unknown CA bundle is no
 * annotation at all: the sidecar's file is then empty, and its calls to the
 * controller fail closed until the controller patches one in.
 */
export function trustAnnotations(trust: ControllerTrust): Record<string, string> {
  return {
    [veilAnnotations.controllerKey]: JSON.stringify(trust.publicJwk),
    ...(trust.caBundle === undefined ? {} : { [veilAnnotations.controllerCa]: trust.caBundle }),
  };
}
