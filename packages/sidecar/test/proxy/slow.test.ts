// Callers that take their time over a request. A body that stalls or trickles
// is refused 408 in the caller's dialect, on record, and its connection closed;
// behind that, Node's own request timeout closes a connection whose request
// never arrives whole. No caller holds the proxy's buffers as long as it likes.
import assert from 'node:assert/strict';
import { after, before, describe, it, type TestContext } from 'node:test';
import { eventually } from '../audit/helpers.ts';
import {
  type RawAnswer,
  type RawConnection,
  rawConnection,
  type SidecarFixture,
  type SidecarFixtureOptions,
  startSidecarFixture,
} from '../fixtures/sidecar.ts';

/** Fails a test that waits for a closed connection in vain, rather than hanging the file. */
const WAIT = { timeout: 10_000 };

/** A bare connection, closed at the end of the test whatever became of it. */
async function connection(t: TestContext, url: string): Promise<RawConnection> {
  const raw = await rawConnection(url);
  t.after(() => raw.socket.destroy());
  return raw;
}

/** A POST head that declares `length` body bytes. */
function postHead(path: string, length: number, token?: string): string {
  return [
    `POST ${path} HTTP/1.1`,
    'host: veil.test',
    ...(token === undefined ? [] : [`authorization: Bearer ${token}`]),
    'content-type: application/json',
    `content-length: ${length}`,
    '',
    '',
  ].join('\r\n');
}

function withTokenize(config: SidecarFixtureOptions['config']): SidecarFixtureOptions {
  return {
    config,
    policy: {
      access: {
        rules: [{ name: 'team', groups: ['ml-team'] }],
        allowRoutes: [{ method: 'POST', path: '/v1/tokenize' }],
      },
    },
  };
}

function errorText(answer: RawAnswer): string {
  return JSON.stringify(answer.json);
}

describe('a body that stops arriving', () => {
  let fixture: SidecarFixture;
  before(async () => {
    fixture = await startSidecarFixture(withTokenize({ bodyIdleTimeoutMs: 100, bodyTimeoutMs: 60_000 }));
  });
  after(() => fixture.close());

  for (const [path, api] of [
    ['/v1/embeddings', 'openai'],
    ['/embed', 'tei'],
    ['/v1/tokenize', 'passthrough'],
  ] as const) {
    it(`is refused 408 in dialect, on record, and its connection closed, on ${path}`, WAIT, async (t) => {
      const from = fixture.records().length;
      const { socket, closed } = await connection(t, fixture.url);
      socket.write(`${postHead(path, 100, await fixture.token())}{"model":"m"`);
      const answer = await closed;
      assert.equal(answer.status, 408, answer.text);
      assert.equal(answer.headers.connection, 'close');
      assert.match(errorText(answer), /no byte of the request body arrived for 100 ms/);
      assert.deepEqual(
        fixture
          .records()
          .slice(from)
          .map((r) => [r.api, r.route, r.outcome, r.status, r.identity?.subject]),
        [[api, path, 'invalid', 408, 'alice']],
      );
      assert.equal(fixture.upstreamCalls.length, 0);
    });
  }
});

describe('a body that trickles', () => {
  let fixture: SidecarFixture;
  before(async () => {
    fixture = await startSidecarFixture({ config: { bodyIdleTimeoutMs: 60_000, bodyTimeoutMs: 200 } });
  });
  after(() => fixture.close());

  it(
    'is refused 408 once it has taken longer than the body timeout, however steadily it comes',
    WAIT,
    async (t) => {
      const { socket, closed } = await connection(t, fixture.url);
      socket.write(`${postHead('/v1/embeddings', 1_000_000, await fixture.token())}{"model":"m","input":"`);
      const drip = setInterval(() => socket.write('a'), 10);
      t.after(() => clearInterval(drip));
      const answer = await closed;
      assert.equal(answer.status, 408, answer.text);
      assert.match(errorText(answer), /did not arrive whole within 200 ms/);
      assert.deepEqual(
        fixture.records().map((r) => [r.route, r.outcome, r.status]),
        [['/v1/embeddings', 'invalid', 408]],
      );
    },
  );
});

describe("Node's request timeout, behind the body timeouts", () => {
  let fixture: SidecarFixture;
  before(async () => {
    fixture = await startSidecarFixture({
      config: { bodyIdleTimeoutMs: 60_000, bodyTimeoutMs: 60_000, requestTimeoutMs: 300 },
    });
  });
  after(() => fixture.close());

  it(
    'answers a request head that never ends 408 in the shape of the API served, on record',
    WAIT,
    async (t) => {
      const from = fixture.records().length;
      const { socket, closed } = await connection(t, fixture.url);
      socket.write('POST /v1/embeddings HTTP/1.1\r\nhost: veil.test\r\n');
      const answer = await closed;
      assert.equal(answer.status, 408, answer.text);
      assert.match(errorText(answer), /"message":"the request did not arrive in time"/);
      assert.deepEqual(
        fixture
          .records()
          .slice(from)
          .map((r) => [r.api, r.route, r.outcome, r.status]),
        [['unknown', '(unparsed)', 'invalid', 408]],
      );
    },
  );

  it('cuts off a request whose body the proxy waits for: on record as the caller gone', WAIT, async (t) => {
    const from = fixture.records().length;
    const { socket, closed } = await connection(t, fixture.url);
    socket.write(`${postHead('/v1/embeddings', 100, await fixture.token())}{"model":"m"`);
    const answer = await closed;
    assert.equal(answer.text, '', 'nobody could hear an answer to a request cut off mid-body');
    // The request's own step learns of the cut only once the connection is gone.
    await eventually('the record of the request', () => fixture.records().length > from, 5_000);
    assert.deepEqual(
      fixture
        .records()
        .slice(from)
        .map((r) => [r.route, r.outcome, r.status, r.identity?.subject]),
      [['/v1/embeddings', 'invalid', 499, 'alice']],
    );
  });

  it(
    'closes a connection whose request was answered but whose body never ends, with no second record',
    WAIT,
    async (t) => {
      const from = fixture.records().length;
      const { socket, closed } = await connection(t, fixture.url);
      socket.write(`${postHead('/v1/chat/completions', 100)}{"model":"m"`);
      const answer = await closed;
      assert.equal(answer.status, 404, answer.text);
      assert.equal(answer.text.match(/HTTP\/1\.1 /g)?.length, 1, 'one answer only');
      assert.deepEqual(
        fixture
          .records()
          .slice(from)
          .map((r) => [r.route, r.outcome, r.status]),
        [['/v1/chat/completions', 'denied', 404]],
      );
    },
  );

  it(
    'closes a connection that never sends a byte unanswered: it made no request to record',
    WAIT,
    async (t) => {
      const from = fixture.records().length;
      const { closed } = await connection(t, fixture.url);
      assert.equal((await closed).text, '');
      assert.equal(fixture.records().length, from);
    },
  );
});
