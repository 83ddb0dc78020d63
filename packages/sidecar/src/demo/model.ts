// A deterministic embedding model speaking all four APIs over real HTTP: the upstream of
// tests, `veil dev` and benchmarks. It validates requests with the same dialects the proxy
// uses, so a request it accepts is one the real APIs accept too.
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Dialect, DialectError, dialectFor, type ParsedEmbedRequest } from '../dialects/index.ts';
import { embedText } from './embedding.ts';
import { responseWriters } from './responses.ts';

export { embedText } from './embedding.ts';

/** The name it lists and answers with when a request names no model. */
export const demoModelName = 'veil-demo-embed';
export const defaultDemoDimensions = 384;

export interface DemoModelOptions {
  /** 0 (the default) picks a free port. */
  port?: number;
  host?: string;
  dimensions?: number;
  /** Sees every embedding request body exactly as it arrived, before validation. */
  onRequest?: (path: string, body: unknown) => void;
}

export interface DemoModel {
  url: string;
  port: number;
  close(): Promise<void>;
}

interface ModelSettings {
  dimensions: number;
  onRequest: ((path: string, body: unknown) => void) | undefined;
}

const modelList = JSON.stringify({
  object: 'list',
  data: [{ id: demoModelName, object: 'model', created: 0, owned_by: 'veil' }],
});

export async function startDemoModel(options: DemoModelOptions = {}): Promise<DemoModel> {
  const settings: ModelSettings = {
    dimensions: options.dimensions ?? defaultDemoDimensions,
    onRequest: options.onRequest,
  };
  const server = createServer((request, response) => {
    handle(request, response, settings).catch(() => sendJson(response, 500, '{"error":"internal error"}'));
  });
  // Longer than a client pool's idle timeout, so a pooled connection is never closed under a request.
  server.keepAliveTimeout = 65_000;
  const host = options.host ?? '127.0.0.1';
  server.listen(options.port ?? 0, host);
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  return { url: `http://${urlHost}:${port}`, port, close: () => stop(server) };
}

async function stop(server: Server): Promise<void> {
  const closed = once(server, 'close');
  server.close();
  server.closeAllConnections();
  await closed;
}

async function handle(
  request: IncomingMessage,
  response: ServerResponse,
  settings: ModelSettings,
): Promise<void> {
  const path = (request.url ?? '/').split('?', 1)[0] ?? '/';
  const dialect = dialectFor('auto', path);
  if (request.method === 'GET' && path === '/health') return sendJson(response, 200, '{"status":"ok"}');
  if (request.method === 'GET' && path === '/v1/models') return sendJson(response, 200, modelList);
  if (dialect === undefined) return sendJson(response, 404, '{"error":"not found"}');
  if (request.method !== 'POST') {
    return sendError(
      response,
      dialect,
      new DialectError(405, `${path} takes POST`, { code: 'invalid_request' }),
    );
  }
  try {
    const body = await readJson(request);
    settings.onRequest?.(path, body);
    const parsed = dialect.parse(body, path);
    sendJson(response, 200, answer(path, parsed, settings.dimensions));
  } catch (error) {
    if (!(error instanceof DialectError)) throw error;
    sendError(response, dialect, error);
  }
}

async function readJson(request: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new DialectError(400, 'request body is not valid JSON');
  }
}

function answer(path: string, request: ParsedEmbedRequest, modelDimensions: number): string {
  const dimensions = request.dimensions ?? modelDimensions;
  if (dimensions > modelDimensions) {
    throw new DialectError(400, `dimensions must be at most ${modelDimensions} for this model`);
  }
  // Token inputs have no text; their ids stand in for words, which keeps them deterministic.
  const inputs = request.tokenInputs?.map((tokens) => tokens.join(' ')) ?? request.texts;
  const vectors = inputs.map((text) => embedText(text, dimensions));
  const write = responseWriters.get(path);
  if (write === undefined) throw new DialectError(404, `${path} is not served`);
  return write({ request, model: request.model || demoModelName, vectors });
}

function sendError(response: ServerResponse, dialect: Dialect, error: DialectError): void {
  const body = dialect.errorBody(error.status, error.code, error.message, error.param);
  sendJson(response, error.status, JSON.stringify(body));
}

function sendJson(response: ServerResponse, status: number, json: string): void {
  response.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(json),
  });
  response.end(json);
}
