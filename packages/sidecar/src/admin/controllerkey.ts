import { readFile } from 'node:fs/promises';
import { importJWK, type JWK } from 'jose';

export type VerifyKey = Awaited<ReturnType<typeof importJWK>>;

/**
 * The controller's public key, read from its file again for each push. The file
 * is mounted from the ConfigMap the controller publishes, which the kubelet
 * updates in place when the controller's key is rotated: a running sidecar
 * then trusts the new key, and only it, without a restart. A file that cannot
 * be read or holds no key fails the push; no earlier key stands in for it.
 */
export class ControllerKeyFile {
  readonly #file: string;
  #loaded: { text: string; key: VerifyKey } | undefined;

  constructor(file: string) {
    this.#file = file;
  }

  async current(): Promise<VerifyKey> {
    const text = await readFile(this.#file, 'utf8');
    if (this.#loaded?.text !== text) this.#loaded = { text, key: await importKey(text) };
    return this.#loaded.key;
  }
}

function importKey(text: string): ReturnType<typeof importJWK> {
  const jwk = JSON.parse(text) as JWK;
  return importJWK(jwk, jwk.alg ?? (jwk.crv === 'Ed25519' ? 'EdDSA' : 'ES256'));
}
