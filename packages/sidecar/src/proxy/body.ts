import type { Readable } from 'node:stream';

export class BodyTooLargeError extends Error {
  readonly limit: number;
  constructor(limit: number) {
    super(`request body exceeds ${limit} bytes`);
    this.limit = limit;
  }
}

/** The caller hung up before its whole body arrived. */
export class CallerGoneError extends Error {
  constructor() {
    super('the caller went away before its request body was read');
  }
}

/**
 * Reads a request body, giving up as soon as it passes limit so an oversized
 * upload is never buffered whole; a declared Content-Length over the limit is
 * refused before reading at all. The rest of an oversized body is discarded
 * unread rather than the socket destroyed, so the caller still gets its 413.
 */
export function readBody(
  stream: Readable,
  declaredLength: string | undefined,
  limit: number,
): Promise<Buffer> {
  if (declaredLength !== undefined && Number(declaredLength) > limit) {
    stream.resume();
    return Promise.reject(new BodyTooLargeError(limit));
  }
  // The body is read only once the caller is authenticated, which can take a
  // key fetch: a caller that hung up meanwhile left a destroyed stream, which
  // emits nothing more to listeners added now.
  if (stream.destroyed) return Promise.reject(new CallerGoneError());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) {
        chunks.push(chunk);
        return;
      }
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.resume();
      chunks.length = 0;
      reject(new BodyTooLargeError(limit));
    };
    const onEnd = () => resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size));
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('error', reject);
    // A stream destroyed without an error ends with 'close' alone; after 'end'
    // the promise is settled and this changes nothing.
    stream.once('close', () => reject(new CallerGoneError()));
  });
}
