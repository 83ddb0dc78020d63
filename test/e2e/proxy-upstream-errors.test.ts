// A real sidecar in front of a model that answers with errors: the caller, on
// the official OpenAI SDK, gets the SDK's own error classes, from bodies in
// OpenAI's format, never the model's raw answer; the record says what the
// caller got.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import {
  call,
  type SidecarFixture,
  startSidecarFixture,
} from '../../packages/sidecar/test/fixtures/sidecar.ts';
import { ScriptedModel } from './support/scripted-model.ts';

/** Resolves to the error a call rejects with; fails when it resolves. */
async function failure(pending: Promise<unknown>): Promise<unknown> {
  try {
    await pending;
  } catch (error) {
    return error;
  }
  assert.fail('the call was expected to fail');
}

const cases = [
  {
    what: "a 401 for Veil's own call (a model run with --api-key)",
    answer: { status: 401, headers: { 'content-type': 'application/json' }, body: '{"error":"bad key"}' },
    status: 502,
    errorClass: OpenAI.InternalServerError,
    message: "the model refused Veil's call (HTTP 401)",
  },
  {
    what: 'a 404 with an empty body (TEI asked for an API it does not serve)',
    answer: { status: 404, headers: {}, body: '' },
    status: 404,
    errorClass: OpenAI.NotFoundError,
    message: 'the model refused the request (HTTP 404)',
  },
  {
    what: 'a text/plain 500',
    answer: { status: 500, headers: { 'content-type': 'text/plain' }, body: 'Internal Server Error' },
    status: 502,
    errorClass: OpenAI.InternalServerError,
    message: 'the model failed (HTTP 500)',
  },
  {
    what: 'a 503',
    answer: { status: 503, headers: { 'content-type': 'application/json' }, body: '{"error":"loading"}' },
    status: 502,
    errorClass: OpenAI.InternalServerError,
    message: 'the model failed (HTTP 503)',
  },
  {
    what: 'a 200 whose body is no embedding response',
    answer: {
      status: 200,
      headers: { 'content-type': 'application/json' },
      body: '{"data":[{"embedding":"x"}',
    },
    status: 502,
    errorClass: OpenAI.InternalServerError,
    message: 'the model returned an invalid embedding response',
  },
] as const;

describe("the model's errors through a real sidecar", () => {
  const model = new ScriptedModel();
  let fixture: SidecarFixture;
  let openai: OpenAI;
  let token: string;

  before(async () => {
    fixture = await startSidecarFixture({ upstream: await model.start(), api: 'auto' });
    token = await fixture.token();
    openai = new OpenAI({ baseURL: `${fixture.url}/v1`, apiKey: token, maxRetries: 0 });
  });
  after(async () => {
    await fixture?.close();
    await model.close();
  });

  for (const { what, answer, status, errorClass, message } of cases) {
    it(`turns ${what} into the SDK's ${errorClass.name} (${status}), on record as such`, async () => {
      model.answer = answer;
      const error = await failure(openai.embeddings.create({ model: 'm', input: 'hello' }));
      assert.ok(error instanceof errorClass, String(error));
      assert.equal(error.status, status);
      assert.deepEqual(error.error, {
        message,
        type: status === 404 ? 'invalid_request_error' : 'server_error',
        param: null,
        code: status === 404 ? 'not_found' : 'upstream_error',
      });
      const record = fixture.records().at(-1);
      assert.deepEqual([record?.outcome, record?.status, record?.error], ['upstream_error', status, message]);
    });
  }

  it("answers every error as JSON, whatever the model's Content-Type", async () => {
    for (const { answer, status } of cases) {
      model.answer = answer;
      const reply = await call(`${fixture.url}/v1/embeddings`, { model: 'm', input: 'hello' }, { token });
      assert.equal(reply.status, status);
      assert.match(String(reply.headers['content-type']), /^application\/json/);
      assert.ok(reply.json !== undefined, reply.text);
    }
  });
});
