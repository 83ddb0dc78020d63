// A model server for request-path tests: it keeps every body as the bytes it
// received and answers whatever the test set last, so a test can see exactly
// what the sidecar forwards and script what the model says back.
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ModelAnswer {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
}

export class ScriptedModel {
  answer: ModelAnswer;
  /** Every request body received, in order, as UTF-8 text. */
  readonly bodies: string[] = [];
  readonly #server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      this.bodies.push(Buffer.concat(chunks).toString('utf8'));
      response.writeHead(this.answer.status, this.answer.headers);
      response.end(this.answer.body);
    });
  });

  constructor(answer: ModelAnswer = { status: 200, headers: {}, body: '' }) {
    this.answer = answer;
  }

  /** Listens on loopback; resolves with the model's base URL. */
  async start(): Promise<string> {
    this.#server.listen(0, '127.0.0.1');
    await once(this.#server, 'listening');
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    this.#server.close();
    await once(this.#server, 'close');
  }
}
