// A caller's vectors-per-minute budget pays for vectors the model makes: a
// request charged on its way in and then not forwarded (answered 202 to come
// back once approved, denied, refused later on its way) gives its charge back.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { call, type SidecarFixture } from '../fixtures/sidecar.ts';
import { type ControllerStandIn, type HeldFixture, startHeldFixture } from './controller.ts';

const BUDGET = 3;
const body = { model: 'm', input: ['one', 'two', 'three'] };
/** Fails a test whose approval is never opened, rather than hanging the file. */
const WAIT = { timeout: 20_000 };

describe('the rate budget of requests that wait for approval', () => {
  let setup: HeldFixture;
  let controller: ControllerStandIn;
  let fixture: SidecarFixture;

  before(async () => {
    setup = await startHeldFixture({
      policy: {
        limits: { vectorsPerMinute: BUDGET, maxInputsPerRequest: BUDGET },
        approvals: {
          rules: [
            {
              name: 'later',
              when: { operation: { header: 'x-veil-operation', values: ['later'] } },
              approvers: { groups: ['ml-approvers'] },
              mode: 'deferred',
            },
          ],
        },
      },
    });
    ({ controller, fixture } = setup);
  });
  after(() => setup?.close());

  const url = () => `${fixture.url}/v1/embeddings`;

  it(
    'charges a deferred request once, when it is forwarded, not when it is told to come back',
    WAIT,
    async () => {
      const token = await fixture.token({ sub: 'deferred-caller' });
      const first = await call(url(), body, { token, headers: { 'x-veil-operation': 'later' } });
      assert.equal(first.status, 202, first.text);
      const id = await controller.nextOpened();
      controller.decide(id, 'approve', 'bob', 'fine');
      const headers = { 'x-veil-operation': 'later', 'x-veil-approval': id };
      const retry = await call(url(), body, { token, headers });
      assert.equal(retry.status, 200, retry.text);
      const spent = await call(url(), { model: 'm', input: 'four' }, { token });
      assert.equal(spent.status, 429, 'the forwarded request spent the whole budget');
    },
  );

  it('gives back the charge of a request denied by its approvers', WAIT, async () => {
    const token = await fixture.token({ sub: 'denied-caller' });
    const first = await call(url(), body, { token, headers: { 'x-veil-operation': 'later' } });
    assert.equal(first.status, 202, first.text);
    const id = await controller.nextOpened();
    controller.decide(id, 'deny', 'bob', 'no');
    const headers = { 'x-veil-operation': 'later', 'x-veil-approval': id };
    assert.equal((await call(url(), body, { token, headers })).status, 403);
    const next = await call(url(), body, { token });
    assert.equal(next.status, 200, next.text);
  });
});
