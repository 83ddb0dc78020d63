import { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import type { BodyLease } from './body-budget.ts';

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

/** The caller stopped sending its body, or took too long over it. */
export class BodyTimeoutError extends Error {}

/** How long a body may take once it is read: between two chunks, and in all. */
export interface BodyDeadlines {
  readonly idleMs: number;
  readonly totalMs: number;
}

/** A body stream that may say how long it may take; one that does not is read however long it takes. */
type TimedBody = Readable & { readonly bodyDeadlines?: BodyDeadlines };

/**
 * The data server's request class (`http.createServer`'s `IncomingMessage`
 * option): every body it receives carries the server's deadlines to whichever
 * step reads it, however far from the server that step is.
 */
export function timedRequests(deadlines: BodyDeadlines): typeof IncomingMessage {
  return class TimedRequest extends IncomingMessage {
    get bodyDeadlines(): BodyDeadlines {
      return deadlines;
    }
  };
}

/**
 * Reads a request body, giving up as soon as it passes limit so an oversized
 * upload is never buffered whole; a declared Content-Length over the limit is
 * refused before reading at all. The rest of an oversized body is discarded
 * unread rather than the socket destroyed, so the caller still gets its 413.
 * A body that stalls, or trickles past its deadline, is given up the same way:
 * what it holds would otherwise stay pinned for as long as the caller likes.
 * Every chunk kept is taken from `lease`: a body the proxy has no room for is
 * given up the same way (BodyBudgetError).
 */
export function readBody(
  stream: TimedBody,
  declaredLength: string | undefined,
  limit: number,
  lease: BodyLease,
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
    const deadlines = stream.bodyDeadlines;
    const idle = deadlines && setTimeout(() => giveUp(stalled(deadlines.idleMs)), deadlines.idleMs);
    const total = deadlines && setTimeout(() => giveUp(tooSlow(deadlines.totalMs)), deadlines.totalMs);
    const stop = () => {
      clearTimeout(idle);
      clearTimeout(total);
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('close', onClose);
    };
    const giveUp = (error: Error) => {
      stop();
      stream.resume();
      chunks.length = 0;
      reject(error);
    };
    const onData = (chunk: Buffer) => {
      idle?.refresh();
      size += chunk.length;
      if (size > limit) giveUp(new BodyTooLargeError(limit));
      else if (!lease.take(chunk.length)) giveUp(lease.refusal());
      else chunks.push(chunk);
    };
    const onEnd = () => {
      stop();
      resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size));
    };
    // A stream destroyed without an error ends with 'close' alone. Every body
    // read whole closes too, after 'end': stop() has removed this listener by
    // then, so a finished read builds no error (and captures no stack) for nobody.
    const onClose = () => {
      stop();
      reject(new CallerGoneError());
    };
    stream.on('data', onData);
    stream.once('end', onEnd);
    // Kept after the read settles: a stream other than Node's request may throw an 'error' nobody listens to.
    stream.once('error', (error) => {
      stop();
      reject(hungUp(error) ? new CallerGoneError() : error);
    });
    stream.once('close', onClose);
  });
}

function stalled(ms: number): BodyTimeoutError {
  return new BodyTimeoutError(`no byte of the request body arrived for ${ms} ms`);
}

function tooSlow(ms: number): BodyTimeoutError {
  return new BodyTimeoutError(`the request body did not arrive whole within ${ms} ms`);
}

/** Node destroys the body of a request whose connection closed mid-body with this error. */
function hungUp(error: Error): boolean {
  return (error as NodeJS.ErrnoException).code === 'ECONNRESET';
}
