// A body naming a key twice, over real HTTP through a real sidecar to a model
// that keeps the raw bytes it gets. JSON leaves duplicate keys to the reader:
// Veil's parser keeps the last, some servers keep the first. The model must
// get the body as Veil read it, so it never embeds text, or uses a model, that
// Veil did not judge.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { PolicySpecInput } from '@veil/core';
import {
  call,
  type SidecarFixture,
  startSidecarFixture,
} from '../../packages/sidecar/test/fixtures/sidecar.ts';
import { ScriptedModel } from './support/scripted-model.ts';

const SSN = '123-45-6789';

/** An OpenAI-compatible answer to a one-input request. */
const embedding = {
  status: 200,
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({
    object: 'list',
    model: 'm',
    data: [{ object: 'embedding', index: 0, embedding: [0.25, 0.5, 0.75] }],
    usage: { prompt_tokens: 1, total_tokens: 1 },
  }),
};

const policy: PolicySpecInput = {
  masking: { rules: [{ name: 'pii', detectors: ['ssn'], operator: 'redact', scopes: ['forward'] }] },
};

describe('a key named twice in a request body', () => {
  const model = new ScriptedModel(embedding);
  let fixture: SidecarFixture;
  let token: string;

  before(async () => {
    fixture = await startSidecarFixture({ upstream: await model.start(), api: 'openai', policy });
    token = await fixture.token();
  });
  after(async () => {
    await fixture?.close();
    await model.close();
  });

  it('reaches the model once, with the value Veil judged: an unmasked first value never does', async () => {
    const raw = `{"model":"m","input":"SSN ${SSN}","input":"nothing here"}`;
    const answer = await call(`${fixture.url}/v1/embeddings`, raw, { token });
    assert.equal(answer.status, 200, answer.text);
    const received = model.bodies.at(-1) ?? '';
    assert.ok(!received.includes(SSN), 'the model never sees the first, unmasked value');
    assert.deepEqual(JSON.parse(received), { model: 'm', input: 'nothing here' });
    assert.equal(received.match(/"input"/g)?.length, 1);
  });

  it('names the model Veil judged access for, not another spelled before it', async () => {
    const raw = '{"model":"other","model":"m","input":"hello"}';
    const answer = await call(`${fixture.url}/v1/embeddings`, raw, { token });
    assert.equal(answer.status, 200, answer.text);
    const received = model.bodies.at(-1) ?? '';
    assert.deepEqual(JSON.parse(received), { model: 'm', input: 'hello' });
    assert.ok(!received.includes('other'), 'a model server keeping the first key would use another model');
    assert.equal(fixture.records().at(-1)?.model, 'm');
  });
});
