// A trace per request, exported as the standard OTEL_* variables say: here OTLP
// over HTTP (JSON) to a collector stand-in on loopback. Telemetry is started once
// per process, so this file sets the variables before any sidecar starts.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { eventually } from './audit/helpers.ts';
import { call, exchange, type SidecarFixture, startSidecarFixture, TEAM } from './fixtures/sidecar.ts';

type OtlpSpan = {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  attributes?: unknown[];
};

const received: { spans: OtlpSpan[]; bodies: string[] } = { spans: [], bodies: [] };
const collector = createServer((request, response) => {
  const chunks: Buffer[] = [];
  request.on('data', (chunk: Buffer) => chunks.push(chunk));
  request.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8');
    received.bodies.push(body);
    const exported = JSON.parse(body) as {
      resourceSpans?: { scopeSpans?: { spans?: OtlpSpan[] }[] }[];
    };
    for (const resource of exported.resourceSpans ?? [])
      for (const scope of resource.scopeSpans ?? []) received.spans.push(...(scope.spans ?? []));
    response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  });
});

let fixture: SidecarFixture;

before(async () => {
  collector.listen(0, '127.0.0.1');
  await once(collector, 'listening');
  const { port } = collector.address() as AddressInfo;
  process.env.OTEL_TRACES_EXPORTER = 'otlp';
  process.env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL = 'http/json';
  process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = `http://127.0.0.1:${port}/v1/traces`;
  process.env.OTEL_BSP_SCHEDULE_DELAY = '50';
  fixture = await startSidecarFixture({
    policy: {
      access: {
        rules: [{ name: 'team', groups: [TEAM], models: ['*'] }],
        allowRoutes: [{ method: 'GET', path: '/v1/models' }],
      },
    },
  });
});

after(async () => {
  await fixture?.close();
  collector.close();
});

test('a request is one trace: its steps are spans of it, and no token or input is in them', async () => {
  const token = await fixture.token();
  const secret = 'reach jane.doe@example.com today';
  const answer = await call(`${fixture.url}/v1/embeddings`, { model: 'm', input: secret }, { token });
  assert.equal(answer.status, 200, answer.text);

  const steps = ['veil.auth', 'veil.policy', 'veil.mask', 'veil.approve', 'veil.upstream', 'veil.record'];
  await eventually('the request and its step spans', () =>
    ['veil.request', ...steps].every((name) => received.spans.some((span) => span.name === name)),
  );
  const root = received.spans.find((span) => span.name === 'veil.request');
  assert.ok(root);
  assert.equal(root.parentSpanId || undefined, undefined, 'the request span is the root');
  // A forwarded request's first record part is written during the upstream step, inside it.
  for (const name of steps) {
    const spans = received.spans.filter((s) => s.name === name && s.traceId === root.traceId);
    assert.ok(
      spans.some((span) => span.parentSpanId === root.spanId),
      `${name} is a step of the request's trace`,
    );
  }
  const exported = received.bodies.join('\n');
  assert.ok(!exported.includes(token), 'no bearer token in what is exported');
  assert.ok(!exported.includes('jane.doe'), 'no input in what is exported');
});

test('an allow-listed route is one trace too, with its auth, policy, upstream and record steps', async () => {
  const answer = await call(`${fixture.url}/v1/models`, undefined, {
    token: await fixture.token(),
    method: 'GET',
  });
  assert.equal(answer.status, 200, answer.text);

  const steps = ['veil.auth', 'veil.policy', 'veil.upstream', 'veil.record'];
  const inTrace = (root: OtlpSpan, name: string) =>
    received.spans.some(
      (s) => s.traceId === root.traceId && s.name === name && s.parentSpanId === root.spanId,
    );
  // The embedding request of the test before is the trace with a masking step.
  const passthrough = () =>
    received.spans.find(
      (s) => s.name === 'veil.request' && !inTrace(s, 'veil.mask') && inTrace(s, 'veil.record'),
    );
  await eventually('the allow-listed request and its step spans', () => passthrough() !== undefined);
  const root = passthrough();
  assert.ok(root);
  for (const name of steps) assert.ok(inTrace(root, name), `${name} is a step of the request's trace`);
});

test('a request refused before any route (no Host, an undecodable URL, bad HTTP, CONNECT) is one trace too', async () => {
  const roots = () => received.spans.filter((span) => span.name === 'veil.request').length;
  const from = roots();
  const refused = [
    'GET /v1/embeddings HTTP/1.1\r\nconnection: close\r\n\r\n',
    'GET /v1/embeddings%zz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n',
    'GET /v1/embeddings HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n',
    'CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n',
  ];
  for (const request of refused) {
    const answer = await exchange(fixture.url, request);
    assert.ok(answer.status !== undefined && answer.status >= 400, answer.text);
  }
  await eventually('a request span for each', () => roots() >= from + refused.length);
  const requests = new Set(received.spans.filter((s) => s.name === 'veil.request').map((s) => s.traceId));
  const records = received.spans.filter((span) => span.name === 'veil.record');
  assert.deepEqual(
    records.filter((span) => !requests.has(span.traceId)),
    [],
    "every record is in a request's trace",
  );
});
