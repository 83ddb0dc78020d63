// Request bodies held at once, across callers and connections: past the
// sidecar's budget a new request is refused 503 in dialect, on record, with
// Retry-After, and served again once the bodies before it are answered.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { eventually } from '../audit/helpers.ts';
import { call, rawConnection, type SidecarFixture, startSidecarFixture } from '../fixtures/sidecar.ts';

const BUDGET = 64 * 1024;

describe('the budget of request bodies held at once', () => {
  let fixture: SidecarFixture;
  before(async () => {
    fixture = await startSidecarFixture({ config: { bodyMemoryBytes: BUDGET } });
  });
  after(() => fixture.close());

  const bodyBytesHeld = async () => {
    const metrics = await call(`${fixture.adminUrl}/metrics`);
    return Number(/^veil_request_body_bytes{[^}]*} (\d+)$/m.exec(metrics.text)?.[1]);
  };

  const embed = async (input: string) =>
    call(`${fixture.url}/v1/embeddings`, { model: 'm', input }, { token: await fixture.token() });

  it('refuses new requests while an upload holds it all, and serves them again once that one is answered', async (t) => {
    // Past the budget already: alone, it may be.
    const body = JSON.stringify({ model: 'm', input: 'a'.repeat(70_000) });
    const { socket, closed } = await rawConnection(fixture.url);
    t.after(() => socket.destroy());
    socket.write(
      [
        'POST /v1/embeddings HTTP/1.1',
        'host: veil.test',
        `authorization: Bearer ${await fixture.token()}`,
        'content-type: application/json',
        `content-length: ${body.length}`,
        'connection: close',
        '',
        body.slice(0, 66_000),
      ].join('\r\n'),
    );
    await eventually('the upload held past the budget', async () => (await bodyBytesHeld()) >= BUDGET);

    const calls = fixture.upstreamCalls.length;
    const refused = await embed('hello');
    assert.equal(refused.status, 503, refused.text);
    assert.equal(refused.headers['retry-after'], '1');
    assert.match(
      JSON.stringify(refused.json),
      /holds as many request bodies as it may \(65536 bytes in all\)/,
    );
    assert.equal(fixture.upstreamCalls.length, calls, 'the refused request never reached the model');
    const record = fixture.records().at(-1);
    assert.deepEqual(
      [record?.route, record?.outcome, record?.status, record?.identity?.subject],
      ['/v1/embeddings', 'unavailable', 503, 'alice'],
    );

    socket.write(body.slice(66_000));
    const upload = await closed;
    assert.match(upload.text, /^HTTP\/1\.1 200 /, upload.text.slice(0, 200));
    assert.equal((await embed('hello again')).status, 200);
    assert.equal(await bodyBytesHeld(), 0, 'every answered request gave its share back');
  });

  it('lets one request alone pass it: a body the policy allows is never refused for good', async () => {
    const answer = await embed('b'.repeat(2 * BUDGET));
    assert.equal(answer.status, 200, answer.text);
  });
});
