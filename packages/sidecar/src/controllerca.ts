// The connection pool for calls to the controller (policy pulls, approvals, admin
// certificates). With a CA file, the controller's certificate is verified by that
// bundle alone, read again for every call: in a cluster the file is the pod's
// `veil.dev/controller-ca` annotation, projected by a downwardAPI volume, which only
// the injector can change (never an object the namespace's editors could write); the
// controller may patch it in after the pod started, and again when its CA rotates. A
// missing or empty file fails that call (closed), never the sidecar, and never falls
// back to the system roots.
import { readFile } from 'node:fs/promises';
import { Agent } from 'undici';

export class ControllerCaError extends Error {
  override name = 'ControllerCaError';
}

export type ControllerAgentOptions = {
  /** PEM CA bundle; the system roots when unset. */
  caFile?: string;
  connectTimeoutMs: number;
  keepAliveTimeoutMs?: number;
};

export class ControllerAgent {
  readonly #options: ControllerAgentOptions;
  #agent: Agent | undefined;
  #ca: string | undefined;

  constructor(options: ControllerAgentOptions) {
    this.#options = options;
  }

  /** The agent for the next call; throws ControllerCaError when the CA file is unusable. */
  async get(): Promise<Agent> {
    const { caFile } = this.#options;
    let ca: string | undefined;
    if (caFile !== undefined) {
      try {
        ca = await readFile(caFile, 'utf8');
      } catch (error) {
        throw new ControllerCaError(
          `the controller's CA bundle ${caFile} cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
        );
      }
      if (!ca.includes('-----BEGIN CERTIFICATE-----'))
        throw new ControllerCaError(
          `the controller's CA bundle ${caFile} holds no certificate: this pod has not been given the controller's CA yet`,
        );
    }
    if (this.#agent === undefined || ca !== this.#ca) {
      const previous = this.#agent;
      this.#agent = new Agent({
        connect: { ...(ca === undefined ? {} : { ca }), timeout: this.#options.connectTimeoutMs },
        ...(this.#options.keepAliveTimeoutMs === undefined
          ? {}
          : { keepAliveTimeout: this.#options.keepAliveTimeoutMs }),
      });
      this.#ca = ca;
      // Calls under way on the old pool finish; it takes no new ones.
      previous?.close().catch(() => undefined);
    }
    return this.#agent;
  }

  async close(): Promise<void> {
    await this.#agent?.close().catch(() => undefined);
    this.#agent = undefined;
  }
}
