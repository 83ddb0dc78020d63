// A stand-in for the controller's approvals API (our own service; the real one
// runs in the e2e suite against a real API server): the same routes, answers
// and refusals, approvals kept in memory and decided by the test. Uses are
// judged by core's checkUse, as the controller judges them.
import { EventEmitter, once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type ApprovalSpec,
  approvalView,
  checkUse,
  markFailure,
  missingApprovalError,
  type OpenApprovalRequest,
  openApprovalSchema,
  ruleChangeRefusal,
  type StoredApproval,
  useApprovalSchema,
} from '@veil/core';
import { type SidecarFixture, type SidecarFixtureOptions, startSidecarFixture } from '../fixtures/sidecar.ts';

export type OpenedBody = OpenApprovalRequest;

export interface ControllerStandIn {
  readonly url: string;
  /** Every open request received, in order. */
  readonly opened: OpenedBody[];
  /** Every use request received, in order, with the approval it named. */
  readonly uses: { id: string; body: unknown }[];
  /** The approvals asked after (GET) without waiting, by id, as often as answered. */
  readonly asked: string[];
  /** The bearer token it accepts; anything else is 401. */
  token: string;
  /** When set, an open beyond this many Pending approvals of one requester is refused 429. */
  maxPending: number | undefined;
  /**
   * Approvals, by id, the sidecar gets no view of: a use refused for their phase
   * comes without the approval, and reading them answers 503.
   */
  readonly withheld: Set<string>;
  /**
   * Resolves with the id of the next approval opened (or the latest, if one is
   * opened already and unseen); rejects once `signal` aborts first.
   */
  nextOpened(signal?: AbortSignal): Promise<string>;
  decide(id: string, decision: 'approve' | 'deny', approver: string, reason: string): void;
  expire(id: string): void;
  /** Moves the approval's expiry into the past, its phase as it is. */
  lapse(id: string): void;
  /** The next use that would be marked fails to be, as when the API server errs. */
  failNextMark(): void;
  /** The policy no longer holds the approval's rule: uses are refused as the controller refuses them. */
  dropRule(id: string): void;
  close(): Promise<void>;
}

/** Seconds precision, as the API server writes creationTimestamp. */
function seconds(date: Date): string {
  return `${date.toISOString().slice(0, 19)}Z`;
}

export async function startControllerStandIn(namespace = 'test'): Promise<ControllerStandIn> {
  const approvals = new Map<string, StoredApproval>();
  const events = new EventEmitter();
  const opened: OpenedBody[] = [];
  const asked: string[] = [];
  const uses: { id: string; body: unknown }[] = [];
  const unseen: string[] = [];
  const droppedRules = new Set<string>();
  const withheld = new Set<string>();
  let counter = 0;
  let failMark = false;

  // The stand-in holds no policies, so no rule as it stands now.
  const view = (stored: StoredApproval) => approvalView(stored, undefined);

  function pendingOf(requester: { issuer: string; subject: string }): number {
    return [...approvals.values()].filter(
      ({ spec, status }) =>
        status.phase === 'Pending' &&
        spec.requester.issuer === requester.issuer &&
        spec.requester.subject === requester.subject,
    ).length;
  }

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
      const body = openApprovalSchema.safeParse(await readJson(request));
      if (!body.success) return send(response, 400, { error: 'invalid approval request' });
      const pending = pendingOf(body.data.requester);
      if (stand.maxPending !== undefined && pending >= stand.maxPending) {
        return send(response, 429, { error: `the requester has ${pending} approval(s) Pending` });
      }
      opened.push(body.data);
      const name = `ea-${(++counter).toString(16).padStart(6, '0')}`;
      const now = new Date();
      const spec: ApprovalSpec = {
        requester: body.data.requester,
        policy: body.data.policy,
        rule: body.data.rule,
        pod: { namespace, name: body.data.pod.name },
        request: body.data.request,
        approvers: { groups: ['ml-approvers'], count: 1 },
        expiresAt: new Date(now.getTime() + 3_600_000).toISOString(),
        singleUse: true,
      };
      const stored: StoredApproval = {
        namespace,
        name,
        createdAt: seconds(now),
        spec,
        status: { phase: 'Pending', decisions: [] },
      };
      approvals.set(`${namespace}/${name}`, stored);
      unseen.push(`${namespace}/${name}`);
      events.emit('opened');
      return send(response, 201, view(stored));
    }
    const match = /^\/v1\/approvals\/([^/]+)\/([^/]+)(\/use)?$/.exec(url.pathname);
    const id = match ? `${match[1]}/${match[2]}` : '';
    const stored = approvals.get(id);
    // As the controller answers: a route it has not, apart from an approval it has not.
    if (!match) return send(response, 404, { error: 'not found' });
    if (!stored) return send(response, 404, { error: missingApprovalError(match[1] ?? '', match[2] ?? '') });
    if (request.method === 'GET' && !match[3]) {
      if (withheld.has(id)) return send(response, 503, { error: 'unavailable' });
      const wait = Number(url.searchParams.get('wait') ?? '0');
      if (stored.status.phase === 'Pending' && wait > 0) {
        const timer = new AbortController();
        const decided = once(events, `decided ${id}`, { signal: timer.signal }).catch(() => undefined);
        const timeout = setTimeout(() => timer.abort(), wait * 1000);
        await decided;
        clearTimeout(timeout);
        timer.abort();
      }
      if (wait === 0) asked.push(id);
      return send(response, 200, view(stored));
    }
    if (request.method === 'POST' && match[3]) {
      const body = await readJson(request);
      uses.push({ id, body });
      const presented = useApprovalSchema.safeParse(body);
      if (!presented.success) return send(response, 400, { error: 'invalid use request' });
      const check = checkUse(stored.name, stored, presented.data, new Date());
      if (!check.ok) {
        return send(response, check.status, {
          error: check.error,
          reason: check.reason,
          ...(check.withApproval && !withheld.has(id) ? { approval: view(stored) } : {}),
        });
      }
      const ruleRefusal = droppedRules.has(id)
        ? ruleChangeRefusal(stored.name, stored.spec, undefined)
        : undefined;
      if (ruleRefusal)
        return send(response, ruleRefusal.status, { error: ruleRefusal.error, reason: ruleRefusal.reason });
      if (check.markUsed && failMark) {
        failMark = false;
        const failure = markFailure(stored.name, stored, presented.data, new Date());
        return send(response, failure.status, { error: failure.error, reason: failure.reason });
      }
      if (check.markUsed) stored.status.usedAt = new Date().toISOString();
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
    asked,
    token: 'sidecar-token-1',
    maxPending: undefined,
    withheld,
    async nextOpened(signal) {
      while (unseen.length === 0) await once(events, 'opened', { signal });
      return unseen.shift() as string;
    },
    decide(id, decision, approver, reason) {
      const stored = approvals.get(id);
      if (!stored) throw new Error(`no approval ${id}`);
      const time = new Date().toISOString();
      stored.status.decisions.push({ approver, groups: ['ml-approvers'], decision, reason, time });
      stored.status.phase = decision === 'approve' ? 'Approved' : 'Denied';
      stored.status.decidedAt = time;
      events.emit(`decided ${id}`);
    },
    expire(id) {
      const stored = approvals.get(id);
      if (!stored) throw new Error(`no approval ${id}`);
      stored.status.phase = 'Expired';
      events.emit(`decided ${id}`);
    },
    lapse(id) {
      const stored = approvals.get(id);
      if (!stored) throw new Error(`no approval ${id}`);
      stored.spec.expiresAt = new Date(Date.now() - 1000).toISOString();
    },
    dropRule(id) {
      droppedRules.add(id);
    },
    failNextMark() {
      failMark = true;
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

export interface HeldFixture {
  readonly controller: ControllerStandIn;
  readonly fixture: SidecarFixture;
  close(): Promise<void>;
}

/** A sidecar whose approvals API is a stand-in, with the service-account token file it presents. */
export async function startHeldFixture(options: SidecarFixtureOptions): Promise<HeldFixture> {
  const controller = await startControllerStandIn();
  const dir = await mkdtemp(join(tmpdir(), 'veil-approvals-'));
  const tokenFile = join(dir, 'token');
  await writeFile(tokenFile, `${controller.token}\n`);
  const fixture = await startSidecarFixture({
    ...options,
    config: { ...options.config, approvalsUrl: controller.url, controllerTokenFile: tokenFile },
  });
  return {
    controller,
    fixture,
    async close() {
      await fixture.close();
      await controller.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
