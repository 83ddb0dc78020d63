// `veil approvals list / show / approve / deny`: held requests, through the user's
// own kubeconfig, so the API server (and its admission webhook) knows who decides;
// or, with --dev, through a running `veil dev` and an approver token from its
// issuer, which then knows who decides by that token.
import type { KubeConfig } from '@kubernetes/client-node';
import {
  ApiUnreachableError,
  type Approval,
  ApprovalsClient,
  type ApprovalsSource,
  contextNamespace,
  loadKubeConfig,
  parseApprovalRef,
} from '../approvals/client.ts';
import { APPROVER_TOKEN_ENV, DevApprovalsClient, DevConnectionError } from '../approvals/devclient.ts';
import { approvedCount, renderApproval, renderTable, unreadableLine } from '../approvals/render.ts';
import { CliError, type Command, parseOptions } from '../command.ts';
import { printable } from '../printable.ts';

export type ApprovalsIo = {
  out(line: string): void;
  /** Builds the client config; tests pass a user's kubeconfig file. */
  kubeConfig(path: string | undefined): KubeConfig;
  /** Where --dev finds VEIL_APPROVER_TOKEN; none when unset. */
  env?: Readonly<Record<string, string | undefined>>;
};

const processApprovalsIo: ApprovalsIo = {
  out: (line) => process.stdout.write(`${line}\n`),
  kubeConfig: (path) => loadKubeConfig(path),
  env: process.env,
};

const common = {
  kubeconfig: { type: 'string' },
  namespace: { type: 'string', short: 'n' },
  dev: { type: 'boolean' },
  state: { type: 'string' },
  token: { type: 'string' },
} as const;

type CommonValues = {
  kubeconfig?: string;
  dev?: boolean;
  state?: string;
  token?: string;
};

/** The cluster through the kubeconfig, or the running `veil dev` with --dev; and the default namespace. */
async function connect(
  command: string,
  values: CommonValues,
  io: ApprovalsIo,
): Promise<{ source: ApprovalsSource; namespace: string }> {
  if (values.dev) {
    if (values.kubeconfig !== undefined) {
      throw new CliError(`${command}: --dev talks to veil dev, not to a cluster: drop --kubeconfig`);
    }
    const client = await DevApprovalsClient.open(
      values.state ?? '.veil',
      values.token ?? io.env?.[APPROVER_TOKEN_ENV],
    );
    return { source: client, namespace: client.namespace };
  }
  if (values.state !== undefined || values.token !== undefined) {
    throw new CliError(
      `${command}: --state and --token go with --dev (a running veil dev); in a cluster your kubeconfig says who you are`,
    );
  }
  const kubeConfig = io.kubeConfig(values.kubeconfig);
  return { source: new ApprovalsClient(kubeConfig), namespace: contextNamespace(kubeConfig) };
}

export async function runApprovalsList(args: string[], io: ApprovalsIo): Promise<number> {
  const { values } = parseOptions('approvals list', args, {
    ...common,
    'all-namespaces': { type: 'boolean', short: 'A' },
    pending: { type: 'boolean' },
  });
  if (values['all-namespaces'] && values.namespace !== undefined) {
    throw new CliError('approvals list: give -n NAMESPACE or -A, not both');
  }
  const where = await connect('approvals list', values, io);
  const all = values['all-namespaces'] === true;
  const namespace = all ? undefined : (values.namespace ?? where.namespace);
  const listed = await where.source.list(namespace);
  let approvals = listed.approvals;
  if (values.pending) approvals = approvals.filter((a) => a.status.phase === 'Pending');
  approvals.sort(
    (a, b) => (a.createdAt ?? '').localeCompare(b.createdAt ?? '') || a.name.localeCompare(b.name),
  );
  if (approvals.length === 0) {
    io.out(
      `No ${values.pending ? 'pending ' : ''}approvals ${all ? 'in any namespace' : `in namespace ${namespace}`}.`,
    );
  } else {
    for (const line of renderTable(approvals, all)) io.out(line);
  }
  // Listed, not fatal: one object this CLI cannot read must not hide the others from approvers.
  for (const bad of listed.unreadable) io.out(unreadableLine(bad));
  return listed.unreadable.length > 0 ? 1 : 0;
}

export async function runApprovalsShow(args: string[], io: ApprovalsIo): Promise<number> {
  const { values, positionals } = parseOptions('approvals show', args, common, true);
  const where = await connect('approvals show', values, io);
  const ref = oneRef('approvals show', positionals, where.namespace, values.namespace);
  const approval = await where.source.get(ref.namespace, ref.name);
  for (const line of renderApproval(approval)) io.out(line);
  return 0;
}

export async function runApprovalsDecide(
  decision: 'approve' | 'deny',
  args: string[],
  io: ApprovalsIo,
): Promise<Approval> {
  const command = `approvals ${decision}`;
  const { values, positionals } = parseOptions(
    command,
    args,
    { ...common, reason: { type: 'string' } },
    true,
  );
  const reason = values.reason?.trim();
  if (!reason) throw new CliError(`${command}: --reason TEXT is required: it goes into the audit evidence`);
  const where = await connect(command, values, io);
  const ref = oneRef(command, positionals, where.namespace, values.namespace);
  let approval: Approval;
  try {
    approval = await where.source.decide(ref.namespace, ref.name, { decision, reason });
  } catch (error) {
    // "refused" is for a decision the server turned down; no answer, or a token turned away, is said as such.
    if (error instanceof DevConnectionError || error instanceof ApiUnreachableError) {
      throw new CliError(`${command}: ${error.message}`, error.exitCode);
    }
    if (error instanceof CliError) {
      throw new CliError(`${command} ${ref.namespace}/${ref.name} refused: ${error.message}`, error.exitCode);
    }
    throw error;
  }
  const mine = approval.status.decisions.at(-1);
  io.out(
    `${decision === 'approve' ? 'Approved' : 'Denied'} ${ref.namespace}/${ref.name} as ${printable(mine?.approver ?? '?')} at ${printable(mine?.time ?? '?')}.`,
  );
  io.out(
    `Phase: ${approval.status.phase} (${approvedCount(approval)} of ${approval.spec.approvers.count} approvals).`,
  );
  return approval;
}

/** The one approval ID given; `explicit` is the -n namespace, if any. */
function oneRef(
  command: string,
  positionals: string[],
  defaultNamespace: string,
  explicit: string | undefined,
) {
  const [text, ...rest] = positionals;
  if (text === undefined || rest.length > 0) {
    throw new CliError(`${command}: name exactly one approval ID (see veil ${command} --help)`);
  }
  try {
    return parseApprovalRef(text, defaultNamespace, explicit);
  } catch (error) {
    if (error instanceof CliError) throw new CliError(`${command}: ${error.message}`, error.exitCode);
    throw error;
  }
}

const sourceOptions = `  --kubeconfig FILE   the kubeconfig (default: KUBECONFIG, then ~/.kube/config)
  -n, --namespace NS  the namespace (default: the context's, else default;
                      under --dev: local)

Against \`veil dev\` instead of a cluster:
  --dev               ask the veil dev running from this folder (its local
                      approvals API), not the Kubernetes API
  --state DIR         the state folder of that veil dev (default .veil)
  --token TOKEN       an approver token from it (default: $${APPROVER_TOKEN_ENV});
                      mint one with: npx veil dev token --approver --sub bob --groups ml-approvers
                      Its subject is the approver recorded with each decision.`;

function exitCodes(done: string, failure: string): string {
  return `Exits 0 when ${done}; 1 ${failure}, if the API server or veil dev cannot be
reached or refuses the request, or if veil dev's state cannot be read; 2 on a
usage error, a kubeconfig that cannot be read, or (with --dev) no veil dev state.`;
}

export const approvalsListCommand: Command = {
  summary: 'list EmbeddingApprovals (held requests)',
  help: `Usage: veil approvals list [--pending] [-n NS | -A] [--kubeconfig FILE | --dev [--state DIR] [--token T]]

Lists held embedding requests: who asked, which model, how many inputs, how
many approvals they have and need, and when they expire.
${exitCodes('listed', 'if one of them cannot be read (the others are listed)')}

Options:
  --pending            only approvals still waiting for a decision
  -A, --all-namespaces every namespace
${sourceOptions}`,
  run: (args) => runApprovalsList(args, processApprovalsIo),
};

export const approvalsShowCommand: Command = {
  summary: 'show one EmbeddingApproval: request, requester, decisions',
  help: `Usage: veil approvals show ID [-n NS] [--kubeconfig FILE | --dev [--state DIR] [--token T]]

ID is NAME (in the namespace) or NAMESPACE/NAME.
${exitCodes('shown', 'if it cannot be read')}

Options:
${sourceOptions}`,
  run: (args) => runApprovalsShow(args, processApprovalsIo),
};

function decideCommand(decision: 'approve' | 'deny'): Command {
  return {
    summary: `${decision} a held request (recorded with your Kubernetes or veil dev identity)`,
    help: `Usage: veil approvals ${decision} ID --reason TEXT [-n NS] [--kubeconfig FILE | --dev [--state DIR] [--token T]]

Records your decision on a held request. The API server (or, with --dev, the
approver token) says who you are, and the time is recorded; nobody decides on
their own request, each approver decides once, and only members of the
approver groups decide. Any deny denies the request.
${exitCodes('recorded', 'if the decision is refused')}

Options:
  --reason TEXT       why (required; part of the audit evidence)
${sourceOptions}`,
    run: async (args) => {
      await runApprovalsDecide(decision, args, processApprovalsIo);
      return 0;
    },
  };
}

export const approvalsApproveCommand = decideCommand('approve');
export const approvalsDenyCommand = decideCommand('deny');
