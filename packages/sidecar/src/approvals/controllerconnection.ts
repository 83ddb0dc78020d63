import { type Dispatcher, request } from 'undici';
import { ControllerAgent } from '../controllerca.ts';
import { readControllerToken } from '../controllercall.ts';
import { ControllerUnavailableError } from './controllererrors.ts';

/** For a connection and for any answer but a long poll's, which gets it on top of its wait. */
export const TIMEOUT_MS = 10_000;

export interface ControllerClientOptions {
  /** The approvals API, e.g. https://veil-injector.veil-system.svc:8445 */
  readonly url: string;
  /** The projected service-account token; read on every call. */
  readonly tokenFile: string;
  /** PEM CA bundle for the controller's serving certificate; the system roots when unset. */
  readonly caFile?: string;
}

/** The controller's status code and its answer's JSON. */
export interface ControllerAnswer {
  readonly status: number;
  readonly json: unknown;
}

/** Calls to the controller's approvals API, each with the pod's token as it is now. */
export class ControllerConnection {
  readonly #agent: ControllerAgent;
  readonly #base: string;
  readonly #tokenFile: string;

  constructor(options: ControllerClientOptions) {
    // The CA file is read on every call: a missing one fails that call closed, not the start.
    this.#agent = new ControllerAgent({
      caFile: options.caFile,
      connectTimeoutMs: TIMEOUT_MS,
      keepAliveTimeoutMs: 30_000,
    });
    this.#base = options.url.replace(/\/+$/, '');
    this.#tokenFile = options.tokenFile;
  }

  async send(
    method: 'GET' | 'POST',
    path: string,
    body: unknown,
    answerTimeoutMs: number,
    signal?: AbortSignal,
  ): Promise<ControllerAnswer> {
    const bearer = await readToken(this.#tokenFile);
    const dispatcher = await this.#dispatcher();
    let response: Dispatcher.ResponseData;
    try {
      response = await request(`${this.#base}${path}`, {
        method,
        dispatcher,
        headers: {
          authorization: `Bearer ${bearer}`,
          accept: 'application/json',
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        headersTimeout: answerTimeoutMs,
        bodyTimeout: answerTimeoutMs,
        ...(signal === undefined ? {} : { signal }),
      });
    } catch (error) {
      const code = (error as { code?: string }).code ?? (error as Error).message;
      throw new ControllerUnavailableError(`the controller could not be reached (${code})`);
    }
    let json: unknown;
    try {
      json = await response.body.json();
    } catch {
      throw new ControllerUnavailableError(`the controller answered ${response.statusCode} without JSON`);
    }
    return { status: response.statusCode, json };
  }

  close(): Promise<void> {
    return this.#agent.close();
  }

  async #dispatcher(): Promise<Dispatcher> {
    try {
      return await this.#agent.get();
    } catch (error) {
      throw new ControllerUnavailableError((error as Error).message);
    }
  }
}

async function readToken(tokenFile: string): Promise<string> {
  try {
    return await readControllerToken(tokenFile);
  } catch (error) {
    throw new ControllerUnavailableError((error as Error).message);
  }
}
