import { errors, Pool } from 'undici';

export interface UpstreamResponse {
  readonly status: number;
  readonly contentType: string | undefined;
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
  readonly connections?: number;
  readonly headersTimeoutMs?: number;
  readonly bodyTimeoutMs?: number;
}

/** A keep-alive connection pool to the model on loopback. */
export class Upstream {
  readonly #pool: Pool;

  constructor(options: UpstreamOptions) {
    this.#pool = new Pool(options.url, {
      connections: options.connections ?? 64,
      pipelining: 1,
      keepAliveTimeout: 30_000,
      headersTimeout: options.headersTimeoutMs ?? 60_000,
      bodyTimeout: options.bodyTimeoutMs ?? 60_000,
    });
  }

  post(path: string, body: Buffer | string, headers: Record<string, string>): Promise<UpstreamResponse> {
    return this.send('POST', path, body, headers);
  }

  async send(
    method: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH' | 'HEAD',
    path: string,
    body: Buffer | string | undefined,
    headers: Record<string, string>,
  ): Promise<UpstreamResponse> {
    try {
      const response = await this.#pool.request({ method, path, body, headers });
      const bytes = Buffer.from(await response.body.arrayBuffer());
      const contentType = response.headers['content-type'];
      return {
        status: response.statusCode,
        contentType: Array.isArray(contentType) ? contentType[0] : contentType,
        body: bytes,
      };
    } catch (error) {
      throw new UpstreamError(classify(error));
    }
  }

  close(): Promise<void> {
    return this.#pool.close();
  }
}

function classify(error: unknown): UpstreamFailure {
  if (error instanceof errors.HeadersTimeoutError || error instanceof errors.BodyTimeoutError) {
    return { kind: 'timeout', message: 'the model did not answer in time' };
  }
  const code = (error as { code?: string }).code ?? 'unknown';
  return { kind: 'unreachable', message: `the model could not be reached (${code})` };
}
