import { readFile } from 'node:fs/promises';
import { importJWK, type JWK } from 'jose';

export type VerifyKey = Awaited<ReturnType<typeof importJWK>>;

/**
 * The controller's public key, read from its file again for each push. In a
 * cluster the file is the pod's `veil.dev/controller-key` annotation, projected
 * by a downwardAPI volume: only the injector can change that annotation (never a
 * ConfigMap or Secret the namespace's editors could write), and the kubelet
 * rewrites the file when the controller patches in a rotated key, so a running
 * sidecar then trusts the new key, and only it, without a restart. A file that
 * cannot be read or holds no key fails the push; no earlier key stands in for it.
 */
export class ControllerKeyFile {
  readonly #file: string;
  #loaded: { text: string; key: VerifyKey } | undefined;

  constructor(file: string) {
    this.#file = file;
  }

  async current(): Promise<VerifyKey> {
    const text = await readFile(this.#file, 'utf8');
    if (this.#loaded?.text !== text) this.#loaded = { text, key: await importKey(this.#file, text) };
    return this.#loaded.key;
  }
}

// The messages name the file, never its content: a wrong file could hold a secret.
async function importKey(file: string, text: string): Promise<VerifyKey> {
  if (text.trim() === '') {
    // An annotation the pod lacks is projected as an empty file.
    throw new Error(`the controller's key file ${file} is empty: this pod was given no controller key`);
  }
  let jwk: JWK;
  try {
    jwk = JSON.parse(text) as JWK;
  } catch {
    throw new Error(`the controller's key file ${file} is not a JWK (not JSON)`);
  }
  try {
    return await importJWK(jwk, jwk.alg ?? (jwk.crv === 'Ed25519' ? 'EdDSA' : 'ES256'));
  } catch (error) {
    throw new Error(
      `the controller's key file ${file} is not a usable public JWK: ${(error as Error).message}`,
    );
  }
}
