// A caller that hangs up mid-body while its token is still being verified, or
// while the model works on its request: the request is on record all the
// same, and its handler ends (the model's call called off).
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { eventually } from '../audit/helpers.ts';
import { startBehindStallingModel, startSidecarFixture } from '../fixtures/sidecar.ts';

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

describe('a caller that hangs up while the model works', () => {
  for (const [path, api] of [
    ['/v1/embeddings', 'openai'],
    ['/v1/tokenize', 'passthrough'],
  ] as const) {
    it(`has its model call called off, on record once, on ${path}`, { timeout: 20_000 }, async () => {
      const { fixture, stalling, sendThenHangUp } = await startBehindStallingModel();
      try {
        await sendThenHangUp(path, '{"model":"m","input":"x"}');
        // The first part of the record is written as the request goes out; the full one once it ends.
        await eventually(
          'the full record of the request',
          () => fixture.records()[0]?.outcome !== 'incomplete',
          10_000,
        );
        assert.deepEqual(
          fixture.records().map((r) => [r.api, r.outcome, r.status, r.error]),
          [[api, 'invalid', 499, 'the caller went away before the model answered']],
        );
      } finally {
        await fixture.close();
        await stalling.close();
      }
    });
  }
});
