// Access is judged before the limits: a caller denied the model learns that,
// and nothing of the policy's limits.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { call, type SidecarFixture, startSidecarFixture } from '../fixtures/sidecar.ts';

describe('access before limits', () => {
  let fixture: SidecarFixture;

  before(async () => {
    fixture = await startSidecarFixture({
      policy: {
        limits: { maxInputsPerRequest: 2, vectorsPerMinute: 3 },
        access: {
          rules: [
            { name: 'team', groups: ['ml-team'], models: ['open-*'] },
            { name: 'not-mallory', action: 'deny', subjects: ['mallory'] },
          ],
        },
      },
    });
  });
  after(() => fixture.close());

  it('answers a denied caller over the input limits 403, naming no limit', async () => {
    const cases = [
      { claims: { sub: 'mallory' }, model: 'open-small', inputs: 3 },
      { claims: { sub: 'carol', groups: ['other-team'] }, model: 'open-small', inputs: 3 },
      { claims: {}, model: 'closed-large', inputs: 3 },
      { claims: {}, model: 'closed-large', inputs: 4 },
    ];
    for (const { claims, model, inputs } of cases) {
      const token = await fixture.token(claims);
      const input = Array.from({ length: inputs }, (_, i) => `text ${i}`);
      const answer = await call(`${fixture.url}/v1/embeddings`, { model, input }, { token });
      assert.equal(answer.status, 403, `${JSON.stringify(claims)} ${model}: ${answer.text}`);
      assert.doesNotMatch(answer.text, /limit|budget/);
      assert.equal(fixture.records().at(-1)?.outcome, 'denied');
    }
    assert.equal(fixture.upstreamCalls.length, 0);
  });

  it('still answers an admitted caller over the input limit 413', async () => {
    const token = await fixture.token();
    const answer = await call(
      `${fixture.url}/v1/embeddings`,
      { model: 'open-small', input: ['a', 'b', 'c'] },
      { token },
    );
    assert.equal(answer.status, 413, answer.text);
    assert.equal(fixture.records().at(-1)?.outcome, 'too_large');
  });
});
