// An allow-listed route passes through unmasked and unlimited, so none may be
// an embedding route: the policy schema holds the list, the sidecar's dialects
// must not serve a path it lacks, and a sidecar refuses such a policy.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { veilEmbeddingPaths } from '@veil/core';
import { allEmbeddingPaths } from '../../src/dialects/index.ts';
import { call, type SidecarFixture, startSidecarFixture, testPolicy } from '../fixtures/sidecar.ts';

describe('allowRoutes and the embedding routes', () => {
  let fixture: SidecarFixture;

  before(async () => {
    fixture = await startSidecarFixture();
  });
  after(() => fixture.close());

  it("knows every path the sidecar's dialects serve as an embedding route", () => {
    assert.deepEqual([...allEmbeddingPaths].sort(), [...veilEmbeddingPaths].sort());
  });

  it('refuses a policy that opens an embedding route, and keeps enforcing the one it has', async () => {
    const good = fixture.sidecar.store.current()?.hash;
    const spec = testPolicy([fixture.issuer]);
    const applied = await fixture.sidecar.store.apply('test', {
      ...spec,
      access: { ...spec.access, allowRoutes: [{ method: 'POST', path: '/embed_all/' }] },
    });
    assert.equal(applied.ok, false);
    assert.match(applied.ok ? '' : applied.reason, /^access\.allowRoutes\.0\.path: .*embedding route/);
    assert.equal(fixture.sidecar.store.current()?.hash, good);
    const answer = await call(`${fixture.url}/embed_all`, { inputs: 'x' }, { token: await fixture.token() });
    assert.equal(answer.status, 404, answer.text);
    assert.equal(fixture.upstreamCalls.length, 0);
  });
});
