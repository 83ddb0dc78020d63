// Approval rules on a sidecar with no controller configured: a request a rule
// holds cannot be held, so it is refused 503 (fail closed), said so plainly,
// and recorded. Holding itself is tested in test/approvals/.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { call, type SidecarFixture, startSidecarFixture } from '../fixtures/sidecar.ts';

describe('approval rules on the request path', () => {
  let fixture: SidecarFixture;
  let token: string;

  before(async () => {
    fixture = await startSidecarFixture({
      policy: {
        approvals: {
          rules: [
            {
              name: 'bulk-reindex',
              when: { minInputs: 3, operation: { header: 'X-Veil-Operation', values: ['reindex'] } },
              approvers: { groups: ['ml-approvers'] },
            },
            {
              name: 'finetunes',
              when: { models: ['ft-*'], groupsNotIn: ['ml-leads'] },
              approvers: { groups: ['ml-approvers'] },
            },
          ],
        },
      },
    });
    token = await fixture.token();
  });
  after(() => fixture.close());

  const reindex = { 'x-veil-operation': 'reindex' };

  it('refuses a request an approval rule holds, 503 with the rule named, without calling the model', async () => {
    const answer = await call(
      `${fixture.url}/v1/embeddings`,
      { model: 'm', input: ['a', 'b', 'c'] },
      { token, headers: reindex },
    );
    assert.equal(answer.status, 503);
    assert.deepEqual(answer.json, {
      error: {
        message: 'approval required by rule bulk-reindex, but no controller is configured to hold it',
        type: 'server_error',
        param: null,
        code: 'unavailable',
      },
    });
    assert.equal(fixture.upstreamCalls.length, 0);
    const record = fixture.records().at(-1);
    assert.equal(record?.outcome, 'unavailable');
    assert.equal(record?.status, 503);
    assert.equal(record?.inputCount, 3);
    assert.match(record?.error ?? '', /bulk-reindex/);
  });

  it('serves what no rule matches: too few inputs, or another operation', async () => {
    const few = await call(
      `${fixture.url}/v1/embeddings`,
      { model: 'm', input: ['a', 'b'] },
      { token, headers: reindex },
    );
    assert.equal(few.status, 200);
    const other = await call(
      `${fixture.url}/v1/embeddings`,
      { model: 'm', input: ['a', 'b', 'c'] },
      { token, headers: { 'x-veil-operation': 'search' } },
    );
    assert.equal(other.status, 200);
    assert.equal(fixture.upstreamCalls.length, 2);
  });

  it('is not fooled by the operation header sent twice', async () => {
    const answer = await call(
      `${fixture.url}/api/embed`,
      { model: 'm', input: ['a', 'b', 'c'] },
      { token, headers: { 'x-veil-operation': ['search', 'reindex'] } },
    );
    assert.equal(answer.status, 503);
    assert.match((answer.json as { error: string }).error, /bulk-reindex/);
  });

  it('matches models and caller groups, in the caller dialect', async () => {
    const held = await call(
      `${fixture.url}/v2/embed`,
      { model: 'ft-legal', texts: ['x'], input_type: 'search_query' },
      { token },
    );
    assert.equal(held.status, 503);
    assert.match((held.json as { message: string }).message, /approval required by rule finetunes/);
    const lead = await call(
      `${fixture.url}/v2/embed`,
      { model: 'ft-legal', texts: ['x'], input_type: 'search_query' },
      { token: await fixture.token({ groups: ['ml-team', 'ml-leads'] }) },
    );
    assert.equal(lead.status, 200);
  });
});
