// A caller that hangs up mid-body while its token is still being verified: the
// request is on record all the same, and its handler ends.
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { eventually } from '../audit/helpers.ts';
import { startSidecarFixture } from '../fixtures/sidecar.ts';

/** Sends the headers and 12 of the 100 bytes declared, then hangs up at once. */
function hangUpMidBody(url: string, path: string, token: string): void {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname, () => {
    socket.write(
      [
        `POST ${path} HTTP/1.1`,
        `host: ${hostname}`,
        `authorization: Bearer ${token}`,
        'content-type: application/json',
        'content-length: 100',
        '',
        '{"model":"m"',
      ].join('\r\n'),
    );
    socket.destroy();
  });
  socket.on('error', () => undefined);
}

describe('a caller that hangs up while being authenticated', () => {
  for (const path of ['/v1/embeddings', '/v1/tokenize']) {
    it(`is on record once on ${path}`, async () => {
      // A new sidecar has yet to fetch the issuer's keys: the token is verified
      // only after the hang-up has reached the proxy.
      const fixture = await startSidecarFixture({
        policy: {
          access: {
            rules: [{ name: 'team', groups: ['ml-team'] }],
            allowRoutes: [{ method: 'POST', path: '/v1/tokenize' }],
          },
        },
      });
      try {
        hangUpMidBody(fixture.url, path, await fixture.token());
        await eventually('the record of the request', () => fixture.records().length > 0, 5_000);
        await sleep(100);
        assert.deepEqual(
          fixture.records().map((r) => [r.route, r.outcome, r.status, r.identity?.subject]),
          [[path, 'invalid', 499, 'alice']],
        );
        assert.equal(fixture.upstreamCalls.length, 0);
      } finally {
        await fixture.close();
      }
    });
  }
});
