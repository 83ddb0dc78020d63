// Requests Node itself would answer, or drop, before any route sees them: heads
// it cannot parse, a missing Host, an expectation it does not know, CONNECT.
// Each is answered by the proxy and on record, like every other request.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AppendUntil, AuditDraft } from '../../src/audit/sink.ts';
import { eventually } from '../audit/helpers.ts';
import {
  call,
  exchange,
  MemorySink,
  rawConnection,
  type SidecarFixture,
  startSidecarFixture,
} from '../fixtures/sidecar.ts';

/** Fails a test that waits for a closed connection in vain, rather than hanging the file. */
const WAIT = { timeout: 10_000 };

/** A disk slow enough that more of the caller's bytes arrive while a refusal is put on record. */
class SlowSink extends MemorySink {
  override async append(draft: AuditDraft, until?: AppendUntil): Promise<void> {
    await sleep(100);
    return super.append(draft, until);
  }
}

function errorMessage(json: unknown): unknown {
  return (json as { error?: { message?: unknown } } | undefined)?.error?.message;
}

describe('requests Node cannot parse', () => {
  let fixture: SidecarFixture;
  before(async () => {
    fixture = await startSidecarFixture();
  });
  after(() => fixture.close());

  const head = 'POST /v1/embeddings HTTP/1.1\r\nhost: veil.test\r\n';
  for (const [what, request, status, outcome] of [
    [
      'a length given twice over (Content-Length and Transfer-Encoding)',
      `${head}content-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n`,
      400,
      'invalid',
    ],
    ['two Content-Lengths', `${head}content-length: 5\r\ncontent-length: 6\r\n\r\nhello`, 400, 'invalid'],
    ['a control character in a header', `${head}x-note: a\x01b\r\ncontent-length: 0\r\n\r\n`, 400, 'invalid'],
    ['an HTTP/2 preface (h2c)', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 400, 'invalid'],
    ['a line that is no HTTP at all', 'hello there\r\n\r\n', 400, 'invalid'],
    ['headers past the size limit', `${head}x-big: ${'a'.repeat(17_000)}\r\n\r\n`, 431, 'too_large'],
  ] as const) {
    it(`refuses ${what} ${status} in the shape of the API served, on record`, WAIT, async () => {
      const from = fixture.records().length;
      const answer = await exchange(fixture.url, request);
      assert.equal(answer.status, status, answer.text);
      assert.equal(answer.headers.connection, 'close');
      assert.equal(typeof errorMessage(answer.json), 'string', answer.text);
      assert.deepEqual(
        fixture
          .records()
          .slice(from)
          .map((r) => [r.api, r.route, r.outcome, r.status]),
        [['unknown', '(unparsed)', outcome, status]],
      );
    });
  }

  it(
    'refuses an HTTP/1.1 request without Host 400 in the dialect of its route, on record',
    WAIT,
    async () => {
      const from = fixture.records().length;
      const answer = await exchange(
        fixture.url,
        'POST /embed HTTP/1.1\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}',
      );
      assert.equal(answer.status, 400, answer.text);
      assert.deepEqual(answer.json, { error: 'the request has no Host header', error_type: 'Validation' });
      assert.deepEqual(
        fixture
          .records()
          .slice(from)
          .map((r) => [r.api, r.route, r.outcome, r.status]),
        [['tei', '/embed', 'invalid', 400]],
      );
    },
  );

  it('serves a request with an expectation it does not know as if it had none', WAIT, async () => {
    const body = JSON.stringify({ model: 'm', input: ['a'] });
    const answer = await exchange(
      fixture.url,
      [
        'POST /v1/embeddings HTTP/1.1',
        'host: veil.test',
        `authorization: Bearer ${await fixture.token()}`,
        'content-type: application/json',
        `content-length: ${body.length}`,
        'expect: x-veil-test',
        'connection: close',
        '',
        body,
      ].join('\r\n'),
    );
    assert.equal(answer.status, 200, answer.text);
    assert.deepEqual([fixture.records().at(-1)?.outcome, fixture.records().at(-1)?.status], ['allowed', 200]);
  });

  it(
    'refuses CONNECT 404 as any method it does not serve, on record, and closes the connection',
    WAIT,
    async () => {
      const from = fixture.records().length;
      const answer = await exchange(
        fixture.url,
        'CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n',
      );
      assert.equal(answer.status, 404, answer.text);
      assert.match(String(errorMessage(answer.json)), /^CONNECT example\.com:443 is not an embedding route/);
      assert.deepEqual(
        fixture
          .records()
          .slice(from)
          .map((r) => [r.api, r.route, r.outcome, r.status]),
        [['unknown', 'example.com:443', 'denied', 404]],
      );
    },
  );
});

describe('a refusal on record while the caller goes on', () => {
  let fixture: SidecarFixture;
  before(async () => {
    fixture = await startSidecarFixture({ sink: new SlowSink() });
  });
  after(() => fixture.close());

  it('records a head Node cannot parse once, however much more arrives meanwhile', WAIT, async () => {
    const from = fixture.records().length;
    const { socket, closed } = await rawConnection(fixture.url);
    socket.write('hello there\r\n');
    await sleep(20);
    socket.write('and more\r\n');
    assert.equal((await closed).status, 400);
    // Time for a second record, had the later bytes started one, to land.
    await sleep(300);
    assert.equal(fixture.records().length, from + 1);
  });

  it('outlives a CONNECT caller that resets its connection before it is answered', WAIT, async () => {
    const from = fixture.records().length;
    const { socket, closed } = await rawConnection(fixture.url);
    socket.write('CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n');
    await sleep(20);
    socket.resetAndDestroy();
    await closed;
    await eventually('the record of the CONNECT', () => fixture.records().length > from, 5_000);
    const answer = await call(`${fixture.url}/v1/embeddings`, { model: 'm', input: ['a'] });
    assert.equal(answer.status, 401, 'the proxy still serves');
  });
});
