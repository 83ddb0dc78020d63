// `veil approvals list / show / approve / deny`: held requests, through the user's
// own kubeconfig, so the API server (and its admission webhook) knows who decides.
import type { KubeConfig } from '@kubernetes/client-node';
import {
  type Approval,
  ApprovalsClient,
  contextNamespace,
  loadKubeConfig,
  parseApprovalRef,
} from '../approvals/client.ts';
import { approvedCount, renderApproval, renderTable } from '../approvals/render.ts';
import { CliError, type Command, parseOptions } from '../command.ts';

export type ApprovalsIo = {
  out(line: string): void;
  /** Builds the client config; tests pass a user's kubeconfig file. */
  kubeConfig(path: string | undefined): KubeConfig;
};

const processApprovalsIo: ApprovalsIo = {
  out: (line) => process.stdout.write(`${line}\n`),
  kubeConfig: (path) => loadKubeConfig(path),
};

const common = {
  kubeconfig: { type: 'string' },
  namespace: { type: 'string', short: 'n' },
} as const;

export async function runApprovalsList(args: string[], io: ApprovalsIo): Promise<number> {
  const { values } = parseOptions('approvals list', args, {
    ...common,
    'all-namespaces': { type: 'boolean', short: 'A' },
    pending: { type: 'boolean' },
  });
  if (values['all-namespaces'] && values.namespace !== undefined) {
    throw new CliError('approvals list: give -n NAMESPACE or -A, not both');
  }
  const kubeConfig = io.kubeConfig(values.kubeconfig);
  const all = values['all-namespaces'] === true;
  const namespace = all ? undefined : (values.namespace ?? contextNamespace(kubeConfig));
  let approvals = await new ApprovalsClient(kubeConfig).list(namespace);
  if (values.pending) approvals = approvals.filter((a) => a.status.phase === 'Pending');
  approvals.sort(
    (a, b) => (a.createdAt ?? '').localeCompare(b.createdAt ?? '') || a.name.localeCompare(b.name),
  );
  if (approvals.length === 0) {
    io.out(
      `No ${values.pending ? 'pending ' : ''}approvals ${all ? 'in any namespace' : `in namespace ${namespace}`}.`,
    );
    return 0;
  }
  for (const line of renderTable(approvals, all)) io.out(line);
  return 0;
}

export async function runApprovalsShow(args: string[], io: ApprovalsIo): Promise<number> {
  const { values, positionals } = parseOptions('approvals show', args, common, true);
  const kubeConfig = io.kubeConfig(values.kubeconfig);
  const ref = oneRef('approvals show', positionals, values.namespace ?? contextNamespace(kubeConfig));
  const approval = await new ApprovalsClient(kubeConfig).get(ref.namespace, ref.name);
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
  const kubeConfig = io.kubeConfig(values.kubeconfig);
  const ref = oneRef(command, positionals, values.namespace ?? contextNamespace(kubeConfig));
  let approval: Approval;
  try {
    approval = await new ApprovalsClient(kubeConfig).decide(ref.namespace, ref.name, { decision, reason });
  } catch (error) {
    if (error instanceof CliError) {
      throw new CliError(`${command} ${ref.namespace}/${ref.name} refused: ${error.message}`, error.exitCode);
    }
    throw error;
  }
  const mine = approval.status.decisions.at(-1);
  io.out(
    `${decision === 'approve' ? 'Approved' : 'Denied'} ${ref.namespace}/${ref.name} as ${mine?.approver ?? '?'} at ${mine?.time ?? '?'}.`,
  );
  io.out(
    `Phase: ${approval.status.phase} (${approvedCount(approval)} of ${approval.spec.approvers.count} approvals).`,
  );
  return approval;
}

function oneRef(command: string, positionals: string[], namespace: string) {
  const [text, ...rest] = positionals;
  if (text === undefined || rest.length > 0) {
    throw new CliError(`${command}: name exactly one approval ID (see veil ${command} --help)`);
  }
  return parseApprovalRef(text, namespace);
}

const kubeOptions = `  --kubeconfig FILE   the kubeconfig (default: KUBECONFIG, then ~/.kube/config)
  -n, --namespace NS  the namespace (default: the context's, else default)`;

export const approvalsListCommand: Command = {
  summary: 'list EmbeddingApprovals (held requests)',
  help: `Usage: veil approvals list [--pending] [-n NS | -A] [--kubeconfig FILE]

Lists held embedding requests: who asked, which model, how many inputs, how
many approvals they have and need, and when they expire.

Options:
  --pending            only approvals still waiting for a decision
  -A, --all-namespaces every namespace
${kubeOptions}`,
  run: (args) => runApprovalsList(args, processApprovalsIo),
};

export const approvalsShowCommand: Command = {
  summary: 'show one EmbeddingApproval: request, requester, decisions',
  help: `Usage: veil approvals show ID [-n NS] [--kubeconfig FILE]

ID is NAME (in the namespace) or NAMESPACE/NAME.

Options:
${kubeOptions}`,
  run: (args) => runApprovalsShow(args, processApprovalsIo),
};

function decideCommand(decision: 'approve' | 'deny'): Command {
  return {
    summary: `${decision} a held request (recorded with your Kubernetes identity)`,
    help: `Usage: veil approvals ${decision} ID --reason TEXT [-n NS] [--kubeconfig FILE]

Records your decision on a held request. The API server records who you are
and when; nobody decides on their own request, each approver decides once,
and only members of the approver groups decide. Any deny denies the request.

Options:
  --reason TEXT       why (required; part of the audit evidence)
${kubeOptions}`,
    run: async (args) => {
      await runApprovalsDecide(decision, args, processApprovalsIo);
      return 0;
    },
  };
}

export const approvalsApproveCommand = decideCommand('approve');
export const approvalsDenyCommand = decideCommand('deny');
