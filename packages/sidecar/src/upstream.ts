import { type Dispatcher, errors, Pool } from 'undici';

export interface UpstreamResponse {
  readonly status: number;
  readonly contentType: string | undefined;
  /** The model's `Retry-After`, as sent; only an error answer's is ever passed on. */
  readonly retryAfter: string | undefined;
  readonly body: Buffer;
}

/**
 * Why a call failed: the model took too long, could not be reached, answered
 * more than the call allows, or the caller went away and the call was called off.
 */
export type UpstreamFailure = {
  kind: 'timeout' | 'unreachable' | 'too_large' | 'cancelled';
  message: string;
};

export class UpstreamError extends Error {
  readonly kind: UpstreamFailure['kind'];
  constructor(failure: UpstreamFailure) {
    super(failure.message);
    this.kind = failure.kind;
  }
}

/**
 * The most of an answer any call holds: an answer is held whole, then parsed,
 * so one without bound would run the sidecar out of memory, and every request
 * in flight with it. Generous for any real embedding answer: 256 vectors of
 * 4096 floats, as JSON text at about 20 bytes a float, come to 20 MiB (as
 * base64, under 6 MiB). Calls on the embedding routes are bound tighter still,
 * by their inputs (proxy/pipeline.ts).
 */
export const maxAnswerBytes = 64 * 1024 * 1024;

export interface UpstreamOptions {
  readonly url: string;
  /** How long a call may take in all, from being sent to its answer's last byte (default 60 s). */
  readonly timeoutMs?: number;
}

/** What one call may take besides its request. */
export interface CallLimits {
  /** Aborts the call (the caller went away): it fails as `cancelled`. */
  readonly signal?: AbortSignal;
  /** The most bytes of answer taken (default and at most `maxAnswerBytes`); past it the call fails as `too_large`. */
  readonly maxBytes?: number;
}

/** A keep-alive connection pool to the model on loopback. */
export class Upstream {
  readonly #pool: Pool;
  readonly #timeoutMs: number;

  constructor(options: UpstreamOptions) {
    this.#timeoutMs = options.timeoutMs ?? 60_000;
    // undici's own timeouts stop a silent model at once: a call's deadline
    // (WholeAnswer) bounds one that keeps sending a little at a time.
    this.#pool = new Pool(options.url, {
      connections: 64,
      pipelining: 1,
      keepAliveTimeout: 30_000,
      headersTimeout: this.#timeoutMs,
      bodyTimeout: this.#timeoutMs,
    });
  }

  post(
    path: string,
    body: Buffer | string,
    headers: Record<string, string>,
    limits: CallLimits = {},
  ): Promise<UpstreamResponse> {
    return this.send('POST', path, body, headers, limits);
  }

  send(
    method: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH' | 'HEAD',
    path: string,
    body: Buffer | string | undefined,
    headers: Record<string, string>,
    limits: CallLimits = {},
  ): Promise<UpstreamResponse> {
    if (limits.signal?.aborted) return Promise.reject(new UpstreamError(cancelled));
    return new Promise((resolve, reject) => {
      const answer = new WholeAnswer(resolve, reject, {
        maxBytes: Math.min(limits.maxBytes ?? maxAnswerBytes, maxAnswerBytes),
        timeoutMs: this.#timeoutMs,
        signal: limits.signal,
      });
      // undici hands any failure, also one found before sending, to the handler.
      this.#pool.dispatch({ method, path, body, headers }, answer);
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

const cancelled: UpstreamFailure = {
  kind: 'cancelled',
  message: 'the caller went away before the model answered',
};

/**
 * Collects one answer whole, straight off the connection. undici's `request`
 * puts the body through a stream and copies it once more when it is read
 * whole: for an answer of 8 vectors of 384 floats, a client doing nothing
 * else spent about 200 us of CPU a call that way, and 125 this way.
 * It settles once: with the answer, or with the first failure, which aborts
 * the call wherever it is (still queued for a connection: as soon as it gets one).
 */
class WholeAnswer implements Dispatcher.DispatchHandler {
  readonly #resolve: (response: UpstreamResponse) => void;
  readonly #reject: (error: UpstreamError) => void;
  readonly #chunks: Buffer[] = [];
  readonly #maxBytes: number;
  readonly #signal: AbortSignal | undefined;
  readonly #deadline: NodeJS.Timeout;
  #controller: Dispatcher.DispatchController | undefined;
  #failure: UpstreamError | undefined;
  #settled = false;
  #bytes = 0;
  #status = 0;
  #contentType: string | undefined;
  #retryAfter: string | undefined;

  constructor(
    resolve: (response: UpstreamResponse) => void,
    reject: (error: UpstreamError) => void,
    limits: { maxBytes: number; timeoutMs: number; signal: AbortSignal | undefined },
  ) {
    this.#resolve = resolve;
    this.#reject = reject;
    this.#maxBytes = limits.maxBytes;
    this.#signal = limits.signal;
    // The handler is the listener itself (handleEvent) and the timer's
    // argument: a call makes no closures for them.
    this.#signal?.addEventListener('abort', this);
    this.#deadline = setTimeout(WholeAnswer.#timeUp, limits.timeoutMs, this);
  }

  /** The caller went away. */
  handleEvent(): void {
    this.#fail(cancelled);
  }

  static #timeUp(this: void, answer: WholeAnswer): void {
    answer.#fail(timedOut);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    if (this.#failure) controller.abort(this.#failure);
    else this.#controller = controller;
  }

  /** Called for an informational answer (1xx) too: the final one follows and overwrites it. */
  onResponseStart(_controller: unknown, statusCode: number, headers: Record<string, unknown>): void {
    this.#status = statusCode;
    this.#contentType = firstValue(headers['content-type']);
    this.#retryAfter = firstValue(headers['retry-after']);
  }

  onResponseData(_controller: unknown, chunk: Buffer): void {
    this.#bytes += chunk.length;
    if (this.#bytes > this.#maxBytes) {
      this.#chunks.length = 0;
      this.#fail({ kind: 'too_large', message: `the model's answer is larger than ${this.#maxBytes} bytes` });
      return;
    }
    this.#chunks.push(chunk);
  }

  onResponseEnd(): void {
    if (!this.#settle()) return;
    const chunks = this.#chunks;
    this.#resolve({
      status: this.#status,
      contentType: this.#contentType,
      retryAfter: this.#retryAfter,
      body: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, this.#bytes),
    });
  }

  onResponseError(_controller: unknown, error: Error): void {
    if (this.#settle()) this.#reject(new UpstreamError(classify(error)));
  }

  /** Settles with `failure` and aborts the call; undici's report of the abort then finds it settled. */
  #fail(failure: UpstreamFailure): void {
    if (!this.#settle()) return;
    this.#failure = new UpstreamError(failure);
    this.#reject(this.#failure);
    this.#controller?.abort(this.#failure);
  }

  /** False when already settled; else stops the deadline and the signal's listener. */
  #settle(): boolean {
    if (this.#settled) return false;
    this.#settled = true;
    clearTimeout(this.#deadline);
    this.#signal?.removeEventListener('abort', this);
    return true;
  }
}

const timedOut: UpstreamFailure = { kind: 'timeout', message: 'the model did not answer in time' };

function firstValue(header: unknown): string | undefined {
  return Array.isArray(header) ? header[0] : (header as string | undefined);
}

function classify(error: unknown): UpstreamFailure {
  if (error instanceof errors.HeadersTimeoutError || error instanceof errors.BodyTimeoutError) {
    return timedOut;
  }
  const code = (error as { code?: string }).code ?? 'unknown';
  return { kind: 'unreachable', message: `the model could not be reached (${code})` };
}
