import { type Dispatcher, errors, Pool } from 'undici';

export interface UpstreamResponse {
  readonly status: number;
  readonly contentType: string | undefined;
  /** The model's `Retry-After`, as sent; only an error answer's is ever passed on. */
  readonly retryAfter: string | undefined;
  readonly body: Buffer;
}

export type UpstreamFailure = { kind: 'timeout' | 'unreachable'; message: string };

export class UpstreamError extends Error {
  readonly kind: UpstreamFailure['kind'];
  constructor(failure: UpstreamFailure) {
    super(failure.message);
    this.kind = failure.kind;
  }
}

export interface UpstreamOptions {
  readonly url: string;
  readonly headersTimeoutMs?: number;
  readonly bodyTimeoutMs?: number;
}

/** A keep-alive connection pool to the model on loopback. */
export class Upstream {
  readonly #pool: Pool;

  constructor(options: UpstreamOptions) {
    this.#pool = new Pool(options.url, {
      connections: 64,
      pipelining: 1,
      keepAliveTimeout: 30_000,
      headersTimeout: options.headersTimeoutMs ?? 60_000,
      bodyTimeout: options.bodyTimeoutMs ?? 60_000,
    });
  }

  post(path: string, body: Buffer | string, headers: Record<string, string>): Promise<UpstreamResponse> {
    return this.send('POST', path, body, headers);
  }

  send(
    method: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH' | 'HEAD',
    path: string,
    body: Buffer | string | undefined,
    headers: Record<string, string>,
  ): Promise<UpstreamResponse> {
    return new Promise((resolve, reject) => {
      // undici hands any failure, also one found before sending, to the handler.
      this.#pool.dispatch({ method, path, body, headers }, new WholeAnswer(resolve, reject));
    });
  }

  close(): Promise<void> {
    return this.#pool.close();
  }

  /** Ends the calls under way at once, each failing as unreachable. */
  destroy(): Promise<void> {
    return this.#pool.destroy();
  }
}

/**
 * Collects one answer whole, straight off the connection. undici's `request`
 * puts the body through a stream and copies it once more when it is read
 * whole: for an answer of 8 vectors of 384 floats, a client doing nothing
 * else spent about 200 us of CPU a call that way, and 125 this way.
 */
class WholeAnswer implements Dispatcher.DispatchHandler {
  readonly #resolve: (response: UpstreamResponse) => void;
  readonly #reject: (error: UpstreamError) => void;
  readonly #chunks: Buffer[] = [];
  #status = 0;
  #contentType: string | undefined;
  #retryAfter: string | undefined;

  constructor(resolve: (response: UpstreamResponse) => void, reject: (error: UpstreamError) => void) {
    this.#resolve = resolve;
    this.#reject = reject;
  }

  /** undici requires it; nothing is to be done as the request goes out. */
  onRequestStart(): void {}

  /** Called for an informational answer (1xx) too: the final one follows and overwrites it. */
  onResponseStart(_controller: unknown, statusCode: number, headers: Record<string, unknown>): void {
    this.#status = statusCode;
    this.#contentType = firstValue(headers['content-type']);
    this.#retryAfter = firstValue(headers['retry-after']);
  }

  onResponseData(_controller: unknown, chunk: Buffer): void {
    this.#chunks.push(chunk);
  }

  onResponseEnd(): void {
    const chunks = this.#chunks;
    this.#resolve({
      status: this.#status,
      contentType: this.#contentType,
      retryAfter: this.#retryAfter,
      body: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks),
    });
  }

  onResponseError(_controller: unknown, error: Error): void {
    this.#reject(new UpstreamError(classify(error)));
  }
}

function firstValue(header: unknown): string | undefined {
  return Array.isArray(header) ? header[0] : (header as string | undefined);
}

function classify(error: unknown): UpstreamFailure {
  if (error instanceof errors.HeadersTimeoutError || error instanceof errors.BodyTimeoutError) {
    return { kind: 'timeout', message: 'the model did not answer in time' };
  }
  const code = (error as { code?: string }).code ?? 'unknown';
  return { kind: 'unreachable', message: `the model could not be reached (${code})` };
}
