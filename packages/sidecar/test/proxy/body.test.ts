import assert from 'node:assert/strict';
import { PassThrough, Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  type BodyDeadlines,
  BodyTimeoutError,
  BodyTooLargeError,
  CallerGoneError,
  readBody,
} from '../../src/proxy/body.ts';
import { BodyBudget, BodyBudgetError, type BodyLease } from '../../src/proxy/body-budget.ts';

/** A body stream that carries deadlines, as the data server's requests do. */
function timed(bodyDeadlines: BodyDeadlines): PassThrough & { bodyDeadlines: BodyDeadlines } {
  return Object.assign(new PassThrough(), { bodyDeadlines });
}

/** A lease with room for any body of these tests. */
function unbounded(): BodyLease {
  return new BodyBudget(1024 * 1024).lease();
}

describe('readBody', () => {
  it('reads a body up to the limit whole, in order', async () => {
    const body = await readBody(
      Readable.from([Buffer.from('ab'), Buffer.from('cd')]),
      undefined,
      4,
      unbounded(),
    );
    assert.equal(body.toString(), 'abcd');
  });

  it('leaves no listener behind on a body read whole, so its close builds no error', async () => {
    // Closed by hand, so what listens for 'close' after the read can be seen.
    const stream = new PassThrough({ autoDestroy: false });
    const closing = stream.listenerCount('close');
    const reading = readBody(stream, undefined, 10, unbounded());
    stream.end(Buffer.from('abc'));
    assert.equal((await reading).toString(), 'abc');
    assert.equal(stream.listenerCount('close'), closing);
    stream.destroy();
    await new Promise((resolve) => stream.once('close', resolve));
  });

  it('refuses a declared Content-Length over the limit before reading a byte', async () => {
    const stream = new PassThrough();
    let read = 0;
    stream.on('data', (chunk: Buffer) => {
      read += chunk.length;
    });
    await assert.rejects(readBody(stream, '11', 10, unbounded()), BodyTooLargeError);
    stream.end(Buffer.alloc(11));
    await new Promise((resolve) => stream.once('end', resolve));
    assert.equal(read, 11, 'the rest is drained, so the socket can still carry the answer');
  });

  it('gives up mid-stream once the limit is passed, without waiting for the end', async () => {
    const stream = new PassThrough();
    const reading = readBody(stream, undefined, 10, unbounded());
    stream.write(Buffer.alloc(6));
    stream.write(Buffer.alloc(6));
    // The stream is still open: only the limit can have ended the read.
    const error = await reading.then(
      () => assert.fail('an oversized body was read'),
      (thrown: unknown) => thrown,
    );
    assert.ok(error instanceof BodyTooLargeError);
    assert.equal(error.limit, 10);
    assert.ok(!stream.writableEnded);
    stream.end(Buffer.alloc(1_000_000));
    await new Promise((resolve) => stream.once('end', resolve));
  });

  it('trusts the bytes over a declared length that lies low', async () => {
    await assert.rejects(
      readBody(Readable.from([Buffer.alloc(20)]), '5', 10, unbounded()),
      BodyTooLargeError,
    );
  });

  it('accepts a body of exactly the limit, and an empty one', async () => {
    assert.equal((await readBody(Readable.from([Buffer.alloc(10)]), '10', 10, unbounded())).length, 10);
    assert.equal((await readBody(Readable.from([]), '0', 10, unbounded())).length, 0);
  });

  it('passes a stream error on', async () => {
    const stream = new PassThrough();
    const reading = readBody(stream, undefined, 10, unbounded());
    stream.destroy(new Error('connection reset'));
    await assert.rejects(reading, /connection reset/);
  });

  it('gives up at once on a stream destroyed before reading began', async () => {
    const stream = new PassThrough();
    stream.destroy();
    await assert.rejects(readBody(stream, '100', 1000, unbounded()), CallerGoneError);
  });

  it('gives up on a stream destroyed without an error while reading', async () => {
    const stream = new PassThrough();
    const reading = readBody(stream, '100', 1000, unbounded());
    stream.write(Buffer.alloc(12));
    stream.destroy();
    await assert.rejects(reading, CallerGoneError);
  });

  it('takes a connection reset mid-body for the caller gone, not a failure of its own', async () => {
    const stream = new PassThrough();
    const reading = readBody(stream, '100', 1000, unbounded());
    stream.write(Buffer.alloc(12));
    stream.destroy(Object.assign(new Error('aborted'), { code: 'ECONNRESET' }));
    await assert.rejects(reading, CallerGoneError);
  });

  it('gives up on a body that stops arriving, and discards what comes after', async () => {
    const stream = timed({ idleMs: 20, totalMs: 60_000 });
    const reading = readBody(stream, '100', 1000, unbounded());
    stream.write(Buffer.alloc(12));
    await assert.rejects(reading, (error: unknown) => {
      assert.ok(error instanceof BodyTimeoutError);
      assert.match(error.message, /no byte of the request body arrived for 20 ms/);
      return true;
    });
    stream.end(Buffer.alloc(88));
    await new Promise((resolve) => stream.once('end', resolve));
  });

  it('gives up on a body that keeps trickling past its whole deadline', async () => {
    const stream = timed({ idleMs: 60_000, totalMs: 50 });
    const reading = readBody(stream, undefined, 1_000_000, unbounded());
    const drip = setInterval(() => stream.write(Buffer.alloc(1)), 5);
    // Unheld, so a read that never gives up fails the test rather than hanging it.
    drip.unref();
    try {
      await assert.rejects(reading, /did not arrive whole within 50 ms/);
    } finally {
      clearInterval(drip);
    }
  });

  it('waits as long as each pause stays short, however many there are', async () => {
    const stream = timed({ idleMs: 400, totalMs: 60_000 });
    const reading = readBody(stream, undefined, 100, unbounded());
    for (let sent = 0; sent < 10; sent += 1) {
      stream.write(Buffer.from('a'));
      await sleep(60);
    }
    stream.end();
    assert.equal((await reading).toString(), 'a'.repeat(10));
  });

  it('gives up a body the budget has no room for, keeping nothing of it, and discards the rest', async () => {
    const budget = new BodyBudget(100);
    budget.lease().take(90);
    const stream = new PassThrough();
    const reading = readBody(stream, undefined, 1000, budget.lease());
    stream.write(Buffer.alloc(5));
    stream.write(Buffer.alloc(20));
    await assert.rejects(reading, BodyBudgetError);
    assert.equal(budget.usedBytes, 95, 'the chunks before the refusal, until the request is answered');
    stream.end(Buffer.alloc(500));
    await new Promise((resolve) => stream.once('end', resolve));
  });
});
