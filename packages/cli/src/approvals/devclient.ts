// Approvals held by a running `veil dev`, through its local approvals API (see
// dev/approvalsapi.ts), with an approver token from its issuer. The same calls as
// the Kubernetes client, so `veil approvals … --dev` prints the same thing.
import { join, resolve } from 'node:path';
import { approvalStatusSchema, storedApprovalSpecSchema } from '@veil/core';
import { z } from 'zod';
import { CliError } from '../command.ts';
import { readDevInfo } from '../dev/state.ts';
import type { Approval, ApprovalList, ApprovalsSource } from './client.ts';

/** Where `veil approvals … --dev` looks for the approver token when --token is not given. */
export const APPROVER_TOKEN_ENV = 'VEIL_APPROVER_TOKEN';

const approvalSchema = z.object({
  namespace: z.string().min(1),
  name: z.string().min(1),
  createdAt: z.string().optional(),
  spec: storedApprovalSpecSchema,
  status: approvalStatusSchema,
});
const listSchema = z.object({ items: z.array(approvalSchema) });
const errorSchema = z.object({ error: z.string() });

/** veil dev could not be asked, or refused the token: no decision was looked at. */
export class DevConnectionError extends CliError {}

const mintHint = 'npx veil dev token --approver --sub bob --groups ml-approvers';

export class DevApprovalsClient implements ApprovalsSource {
  readonly #url: string;
  readonly #token: string;
  readonly #dir: string;
  /** The namespace `veil dev` opens approvals in. */
  readonly namespace: string;

  private constructor(url: string, token: string, dir: string, namespace: string) {
    this.#url = url.replace(/\/+$/, '');
    this.#token = token;
    this.#dir = dir;
    this.namespace = namespace;
  }

  /** The `veil dev` whose state is in `dir`, with an approver token. */
  static async open(dir: string, token: string | undefined): Promise<DevApprovalsClient> {
    const { info } = await readDevInfo(dir);
    if (info.approvals === undefined) {
      throw new CliError(
        `the veil dev in ${resolve(dir)} has no approvals API: restart it with this version of veil`,
      );
    }
    if (token === undefined || token.trim() === '') {
      throw new CliError(
        `an approver token is needed: pass --token TOKEN or set ${APPROVER_TOKEN_ENV}; mint one with \`${mintHint}\``,
      );
    }
    return new DevApprovalsClient(info.approvals.url, token.trim(), resolve(dir), info.approvals.namespace);
  }

  /** All readable: an answer this CLI cannot read fails as a whole, veil dev being of the same version. */
  async list(namespace: string | undefined): Promise<ApprovalList> {
    const { items } = listSchema.parse(await this.#call('GET', '/v1/approvals', undefined, listSchema));
    return {
      approvals: items.filter((a) => namespace === undefined || a.namespace === namespace).map(toApproval),
      unreadable: [],
    };
  }

  async get(namespace: string, name: string): Promise<Approval> {
    return toApproval(
      await this.#call('GET', `/v1/approvals/${enc(namespace)}/${enc(name)}`, undefined, approvalSchema),
    );
  }

  /** Only `decision` and `reason` go out: `veil dev` records the token's subject as the approver. */
  async decide(
    namespace: string,
    name: string,
    decision: { decision: 'approve' | 'deny'; reason: string },
  ): Promise<Approval> {
    return toApproval(
      await this.#call(
        'POST',
        `/v1/approvals/${enc(namespace)}/${enc(name)}/decisions`,
        decision,
        approvalSchema,
      ),
    );
  }

  async #call<T extends z.ZodType>(
    method: 'GET' | 'POST',
    path: string,
    body: unknown,
    schema: T,
  ): Promise<z.infer<T>> {
    let response: Response;
    try {
      response = await fetch(`${this.#url}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${this.#token}`,
          accept: 'application/json',
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(10_000),
      });
    } catch (error) {
      const code = (error as { cause?: { code?: string } }).cause?.code;
      if (code === 'ECONNREFUSED') {
        throw new DevConnectionError(
          `veil dev is not running: nothing answers at ${this.#url} (the approvals API named in ` +
            `${join(this.#dir, 'dev.json')}). Start \`veil dev\` in the folder holding ${this.#dir}, ` +
            'or pass --state DIR of the veil dev that runs',
          1,
        );
      }
      throw new DevConnectionError(
        `veil dev cannot be reached at ${this.#url}: ${code ?? (error as Error).message}`,
        1,
      );
    }
    let json: unknown;
    try {
      json = await response.json();
    } catch {
      throw new DevConnectionError(
        `${this.#url} answered ${response.status} without JSON: is it veil dev?`,
        1,
      );
    }
    if (!response.ok) {
      const said = errorSchema.safeParse(json);
      const message = said.success ? said.data.error : `veil dev answered ${response.status}`;
      if (response.status === 401) {
        throw new DevConnectionError(`veil dev refused the approver token: ${message}`, 1);
      }
      throw new CliError(message, 1);
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) throw new CliError('veil dev answered with an approval this CLI cannot read', 1);
    return parsed.data;
  }
}

function toApproval(approval: z.infer<typeof approvalSchema>): Approval {
  return { ...approval, createdAt: approval.createdAt };
}

function enc(segment: string): string {
  return encodeURIComponent(segment);
}
