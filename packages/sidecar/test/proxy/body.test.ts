import assert from 'node:assert/strict';
import { PassThrough, Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { BodyTooLargeError, CallerGoneError, readBody } from '../../src/proxy/body.ts';

describe('readBody', () => {
  it('reads a body up to the limit whole, in order', async () => {
    const body = await readBody(Readable.from([Buffer.from('ab'), Buffer.from('cd')]), undefined, 4);
    assert.equal(body.toString(), 'abcd');
  });

  it('refuses a declared Content-Length over the limit before reading a byte', async () => {
    const stream = new PassThrough();
    let read = 0;
    stream.on('data', (chunk: Buffer) => {
      read += chunk.length;
    });
    await assert.rejects(readBody(stream, '11', 10), BodyTooLargeError);
    stream.end(Buffer.alloc(11));
    await new Promise((resolve) => stream.once('end', resolve));
    assert.equal(read, 11, 'the rest is drained, so the socket can still carry the answer');
  });

  it('gives up mid-stream once the limit is passed, without waiting for the end', async () => {
    const stream = new PassThrough();
    const reading = readBody(stream, undefined, 10);
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
    await assert.rejects(readBody(Readable.from([Buffer.alloc(20)]), '5', 10), BodyTooLargeError);
  });

  it('accepts a body of exactly the limit, and an empty one', async () => {
    assert.equal((await readBody(Readable.from([Buffer.alloc(10)]), '10', 10)).length, 10);
    assert.equal((await readBody(Readable.from([]), '0', 10)).length, 0);
  });

  it('passes a stream error on', async () => {
    const stream = new PassThrough();
    const reading = readBody(stream, undefined, 10);
    stream.destroy(new Error('connection reset'));
    await assert.rejects(reading, /connection reset/);
  });

  it('gives up at once on a stream destroyed before reading began', async () => {
    const stream = new PassThrough();
    stream.destroy();
    await assert.rejects(readBody(stream, '100', 1000), CallerGoneError);
  });

  it('gives up on a stream destroyed without an error while reading', async () => {
    const stream = new PassThrough();
    const reading = readBody(stream, '100', 1000);
    stream.write(Buffer.alloc(12));
    stream.destroy();
    await assert.rejects(reading, CallerGoneError);
  });
});
