// A stand-in for the controller's approvals API (our own service; the real one
// runs in the e2e suite against a real API server): the same routes, answers
// and refusals, approvals kept in memory and decided by the test.
import { EventEmitter, once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface OpenedBody {
  policy: string;
  rule: string;
  pod: { name: string };
  requester: { issuer: string; subject: string; groups: string[] };
  request: {
    api: string;
    model: string;
    inputCount: number;
    bytes: number;
    operation?: string;
    digest: string;
    summary?: string;
  };
}

interface Stored {
  namespace: string;
  name: string;
  phase: 'Pending' | 'Approved' | 'Denied' | 'Expired';
  expiresAt: string;
  requestedAt: string;
  decidedAt?: string;
  usedAt?: string;
  decisions: { approver: string; decision: 'approve' | 'deny'; reason: string; time: string }[];
  opened: OpenedBody;
}

export interface ControllerStandIn {
  readonly url: string;
  /** Every open request received, in order. */
  readonly opened: OpenedBody[];
  /** Every use request received, in order, with the approval it named. */
  readonly uses: { id: string; body: unknown }[];
  /** The bearer token it accepts; anything else is 401. */
  token: string;
  /** Resolves with the id of the next approval opened (or the latest, if one is opened already and unseen). */
  nextOpened(): Promise<string>;
  decide(id: string, decision: 'approve' | 'deny', approver: string, reason: string): void;
  expire(id: string): void;
  close(): Promise<void>;
}

/** Seconds precision, as the API server writes creationTimestamp. */
function seconds(date: Date): string {
  return `${date.toISOString().slice(0, 19)}Z`;
}

export async function startControllerStandIn(namespace = 'test'): Promise<ControllerStandIn> {
  const approvals = new Map<string, Stored>();
  const events = new EventEmitter();
  const opened: OpenedBody[] = [];
  const uses: { id: string; body: unknown }[] = [];
  const unseen: string[] = [];
  let counter = 0;

  const view = (stored: Stored) => {
    const { opened: _opened, ...rest } = stored;
    return { ...rest, singleUse: true, holdTimeoutSeconds: undefined, mode: undefined };
  };

  async function readJson(request: IncomingMessage): Promise<unknown> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  }

  function send(response: ServerResponse, status: number, body: unknown): void {
    response.writeHead(status, { 'content-type': 'application/json' });
    response.end(JSON.stringify(body));
  }

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    if (request.headers.authorization !== `Bearer ${stand.token}`) {
      return send(response, 401, { error: 'a service-account token is required' });
    }
    const url = new URL(request.url ?? '/', 'http://controller');
    if (request.method === 'POST' && url.pathname === '/v1/approvals') {
      const body = (await readJson(request)) as OpenedBody;
      opened.push(body);
      const name = `ea-${(++counter).toString(16).padStart(6, '0')}`;
      const now = new Date();
      const stored: Stored = {
        namespace,
        name,
        phase: 'Pending',
        expiresAt: new Date(now.getTime() + 3_600_000).toISOString(),
        requestedAt: seconds(now),
        decisions: [],
        opened: body,
      };
      approvals.set(`${namespace}/${name}`, stored);
      unseen.push(`${namespace}/${name}`);
      events.emit('opened');
      return send(response, 201, view(stored));
    }
    const match = /^\/v1\/approvals\/([^/]+)\/([^/]+)(\/use)?$/.exec(url.pathname);
    const id = match ? `${match[1]}/${match[2]}` : '';
    const stored = approvals.get(id);
    if (!match || !stored) return send(response, 404, { error: `no EmbeddingApproval ${id}` });
    if (request.method === 'GET' && !match[3]) {
      const wait = Number(url.searchParams.get('wait') ?? '0');
      if (stored.phase === 'Pending' && wait > 0) {
        const timer = new AbortController();
        const decided = once(events, `decided ${id}`, { signal: timer.signal }).catch(() => undefined);
        const timeout = setTimeout(() => timer.abort(), wait * 1000);
        await decided;
        clearTimeout(timeout);
        timer.abort();
      }
      return send(response, 200, view(stored));
    }
    if (request.method === 'POST' && match[3]) {
      const body = (await readJson(request)) as {
        requester: { issuer: string; subject: string };
        digest: string;
      };
      uses.push({ id, body });
      const { requester, request: held } = stored.opened;
      if (requester.issuer !== body.requester.issuer || requester.subject !== body.requester.subject) {
        return send(response, 403, {
          error: `approval ${stored.name} was granted to another caller`,
          reason: 'identity',
        });
      }
      if (held.digest !== body.digest) {
        return send(response, 403, {
          error: `approval ${stored.name} was granted for another payload`,
          reason: 'digest',
        });
      }
      if (stored.phase !== 'Approved') {
        return send(response, 409, {
          error: `approval ${stored.name} is ${stored.phase}`,
          reason: stored.phase,
          approval: view(stored),
        });
      }
      if (stored.usedAt !== undefined) {
        return send(response, 409, { error: `approval ${stored.name} was already used`, reason: 'used' });
      }
      stored.usedAt = new Date().toISOString();
      return send(response, 200, view(stored));
    }
    return send(response, 404, { error: 'not found' });
  }

  const server: Server = createServer((request, response) => {
    handle(request, response).catch((error) => send(response, 500, { error: String(error) }));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;

  const stand: ControllerStandIn = {
    url: `http://127.0.0.1:${port}`,
    opened,
    uses,
    token: 'sidecar-token-1',
    async nextOpened() {
      while (unseen.length === 0) await once(events, 'opened');
      return unseen.shift() as string;
    },
    decide(id, decision, approver, reason) {
      const stored = approvals.get(id);
      if (!stored) throw new Error(`no approval ${id}`);
      const time = new Date().toISOString();
      stored.decisions.push({ approver, decision, reason, time });
      stored.phase = decision === 'approve' ? 'Approved' : 'Denied';
      stored.decidedAt = time;
      events.emit(`decided ${id}`);
    },
    expire(id) {
      const stored = approvals.get(id);
      if (!stored) throw new Error(`no approval ${id}`);
      stored.phase = 'Expired';
      events.emit(`decided ${id}`);
    },
    async close() {
      const closed = once(server, 'close');
      server.close();
      server.closeAllConnections();
      await closed;
    },
  };
  return stand;
}
