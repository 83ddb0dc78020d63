// The official OpenAI SDK against the sidecar in front of the demo model: the
// calls an application makes, and the errors it must see as the SDK's own.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import { demoModelName } from '../../src/demo/model.ts';
import { type SidecarFixture, startSidecarFixture } from '../fixtures/sidecar.ts';

function client(fixture: SidecarFixture, apiKey: string): OpenAI {
  return new OpenAI({ baseURL: `${fixture.url}/v1`, apiKey, maxRetries: 0 });
}

function fromBase64(value: string): number[] {
  const bytes = Buffer.from(value, 'base64');
  return Array.from(new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4));
}

/** Resolves to the error a call rejects with; fails when it resolves. */
async function failure(call: Promise<unknown>): Promise<unknown> {
  try {
    await call;
  } catch (error) {
    return error;
  }
  assert.fail('the call was expected to fail');
}

describe('OpenAI SDK through the sidecar', () => {
  let fixture: SidecarFixture;
  let openai: OpenAI;

  before(async () => {
    fixture = await startSidecarFixture({
      policy: {
        access: {
          rules: [
            { name: 'team', groups: ['ml-team'], models: ['*'] },
            { name: 'no-finetunes', action: 'deny', groups: ['ml-team'], models: ['ft-*'] },
          ],
        },
        limits: { maxInputsPerRequest: 4, maxBytesPerRequest: 4096, vectorsPerMinute: 1000 },
      },
    });
    openai = client(fixture, await fixture.token());
  });
  after(() => fixture.close());

  it('embeds a string input, the SDK decoding its default base64 into floats', async () => {
    const result = await openai.embeddings.create({ model: demoModelName, input: 'the cat sat on the mat' });
    assert.equal(result.data.length, 1);
    assert.equal(result.data[0]?.embedding.length, 384);
    assert.ok(result.data[0]?.embedding.every((value) => typeof value === 'number'));
    assert.equal(result.model, demoModelName);
    const { path, body } = fixture.upstreamCalls.at(-1) ?? {};
    assert.deepEqual(
      { path, body },
      {
        path: '/v1/embeddings',
        body: { model: demoModelName, input: 'the cat sat on the mat', encoding_format: 'base64' },
      },
    );
  });

  it('embeds an array input with one vector per input, in order', async () => {
    const input = ['first text', 'second text', 'third text'];
    const result = await openai.embeddings.create({ model: demoModelName, input, encoding_format: 'float' });
    assert.deepEqual(
      result.data.map((item) => item.index),
      [0, 1, 2],
    );
    const single = await openai.embeddings.create({
      model: demoModelName,
      input: 'second text',
      encoding_format: 'float',
    });
    assert.deepEqual(result.data[1]?.embedding, single.data[0]?.embedding);
  });

  it('gives the same vectors in base64 as in float', async () => {
    const input = ['alpha beta', 'gamma delta'];
    const floats = await openai.embeddings.create({ model: demoModelName, input, encoding_format: 'float' });
    const encoded = await openai.embeddings.create({
      model: demoModelName,
      input,
      encoding_format: 'base64',
    });
    for (const [i, item] of encoded.data.entries()) {
      assert.equal(typeof item.embedding, 'string');
      assert.deepEqual(fromBase64(item.embedding as unknown as string), floats.data[i]?.embedding);
    }
    // The record digests the vectors themselves, whatever their encoding on the wire.
    const [floatRecord, base64Record] = fixture.records().slice(-2);
    assert.equal(floatRecord?.vectors?.digest, base64Record?.vectors?.digest);
    assert.deepEqual(base64Record?.vectors && { ...base64Record.vectors, digest: '' }, {
      count: 2,
      dimensions: 384,
      digest: '',
    });
  });

  it('passes dimensions to the model', async () => {
    const result = await openai.embeddings.create({ model: demoModelName, input: 'short', dimensions: 32 });
    assert.equal(result.data[0]?.embedding.length, 32);
    assert.equal(fixture.records().at(-1)?.vectors?.dimensions, 32);
  });

  it('raises AuthenticationError (401) for a bad token', async () => {
    const stranger = client(fixture, 'not-a-jwt');
    const error = await failure(stranger.embeddings.create({ model: demoModelName, input: 'x' }));
    assert.ok(error instanceof OpenAI.AuthenticationError);
    assert.equal(error.status, 401);
    assert.equal(error.type, 'authentication_error');
    assert.equal(fixture.records().at(-1)?.outcome, 'unauthenticated');
  });

  it('raises PermissionDeniedError (403) for a model the caller may not use', async () => {
    const error = await failure(openai.embeddings.create({ model: 'ft-secret', input: 'x' }));
    assert.ok(error instanceof OpenAI.PermissionDeniedError);
    assert.equal(error.status, 403);
    assert.match(error.message, /may not use model ft-secret/);
    assert.equal(fixture.records().at(-1)?.outcome, 'denied');
  });

  it('raises a 413 APIError for too many inputs and for a body over the byte limit', async () => {
    const many = await failure(
      openai.embeddings.create({ model: demoModelName, input: ['a', 'b', 'c', 'd', 'e'] }),
    );
    assert.ok(many instanceof OpenAI.APIError);
    assert.equal(many.status, 413);
    assert.match(many.message, /5 inputs exceed the limit of 4/);
    const big = await failure(openai.embeddings.create({ model: demoModelName, input: 'x'.repeat(5000) }));
    assert.ok(big instanceof OpenAI.APIError);
    assert.equal(big.status, 413);
    assert.deepEqual(
      fixture
        .records()
        .slice(-2)
        .map((r) => r.outcome),
      ['too_large', 'too_large'],
    );
  });

  it('raises RateLimitError (429) with Retry-After once the vectors per minute are spent', async () => {
    const paced = await startSidecarFixture({ policy: { limits: { vectorsPerMinute: 6 } } });
    try {
      const sdk = client(paced, await paced.token());
      await sdk.embeddings.create({ model: demoModelName, input: ['1', '2', '3', '4'] });
      await sdk.embeddings.create({ model: demoModelName, input: ['5', '6'] });
      const error = await failure(sdk.embeddings.create({ model: demoModelName, input: '7' }));
      assert.ok(error instanceof OpenAI.RateLimitError);
      assert.equal(error.status, 429);
      // One vector a minute's sixth: at most ten seconds to wait.
      const retryAfter = Number(error.headers?.get('retry-after'));
      assert.ok(
        Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 10,
        `retry-after ${retryAfter}`,
      );
      assert.equal(paced.records().at(-1)?.outcome, 'rate_limited');
      assert.equal(paced.upstreamCalls.length, 2);
    } finally {
      await paced.close();
    }
  });

  it('raises BadRequestError (400) for inputs of the wrong type', async () => {
    const error = await failure(
      openai.embeddings.create({ model: demoModelName, input: [1.5, 'text'] as unknown as string[] }),
    );
    assert.ok(error instanceof OpenAI.BadRequestError);
    assert.equal(error.status, 400);
    assert.equal(error.type, 'invalid_request_error');
    assert.equal(fixture.records().at(-1)?.outcome, 'invalid');
  });
});
