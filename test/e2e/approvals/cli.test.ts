// `veil approvals list / show` against the real API server when some approvals
// are not what this CLI can read, as when a newer controller's CRD admits a
// phase or an API this version does not know: those are named, never shown as
// Pending, and never hide the readable ones.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  ApiextensionsV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import { GROUP, VERSION } from '@veil/core';
import {
  type ApprovalsIo,
  runApprovalsList,
  runApprovalsShow,
} from '../../../packages/cli/src/commands/approvals.ts';
import { type ControlPlane, startControlPlane } from '../../harness/index.ts';
import { eventually, freshNamespace, installCrds } from '../kube/support/cluster.ts';
import { approvalSpec, createApproval } from './support.ts';

let cp: ControlPlane;

before(async () => {
  cp = await startControlPlane();
  await installCrds(cp);
  await widenCrd();
});

after(async () => {
  await cp?.stop();
});

/** What a newer CRD might admit: a phase and an API this CLI does not know. */
async function widenCrd(): Promise<void> {
  const schema = '/spec/versions/0/schema/openAPIV3Schema/properties';
  await cp
    .kubeConfig()
    .makeApiClient(ApiextensionsV1Api)
    .patchCustomResourceDefinition(
      {
        name: `embeddingapprovals.${GROUP}`,
        body: [
          { op: 'add', path: `${schema}/status/properties/phase/enum/-`, value: 'Escalated' },
          { op: 'add', path: `${schema}/spec/properties/request/properties/api/enum/-`, value: 'grpc' },
        ],
      },
      setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
    );
}

function io(lines: string[]): ApprovalsIo {
  return { out: (line) => lines.push(line), kubeConfig: () => cp.kubeConfig() };
}

const objects = () => cp.kubeConfig().makeApiClient(CustomObjectsApi);

test('an unreadable status shows as Unreadable, and an unreadable object is named while the rest are listed', async () => {
  const namespace = await freshNamespace(cp, 'cli');
  const readable = await createApproval(cp, namespace, approvalSpec({ pod: { namespace, name: 'embed-0' } }));
  const odd = await createApproval(cp, namespace, approvalSpec({ pod: { namespace, name: 'embed-0' } }));
  await eventually('the API server to admit the new phase', async () => {
    try {
      await objects().patchNamespacedCustomObjectStatus(
        {
          group: GROUP,
          version: VERSION,
          namespace,
          plural: 'embeddingapprovals',
          name: odd,
          body: { status: { phase: 'Escalated' } },
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
      return true;
    } catch {
      return undefined;
    }
  });
  const spec = approvalSpec({ pod: { namespace, name: 'embed-0' } });
  const foreign = 'req-foreign';
  await objects().createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: 'embeddingapprovals',
    body: {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: 'EmbeddingApproval',
      metadata: { name: foreign, namespace },
      spec: { ...spec, request: { ...spec.request, api: 'grpc' } },
    },
  });

  const lines: string[] = [];
  assert.equal(await runApprovalsList(['-n', namespace], io(lines)), 1);
  const row = (name: string) => lines.find((line) => line.startsWith(`${name} `));
  assert.match(row(readable) ?? '', /\bPending\b/);
  assert.match(row(odd) ?? '', /\bUnreadable\b/);
  assert.doesNotMatch(row(odd) ?? '', /\bPending\b/);
  assert.ok(
    lines.some((line) =>
      line.startsWith(`Cannot read EmbeddingApproval ${namespace}/${foreign}: spec.request.api: `),
    ),
    lines.join('\n'),
  );

  // Not taken for Pending when asked for pending ones either.
  const pending: string[] = [];
  await runApprovalsList(['--pending', '-n', namespace], io(pending));
  assert.ok(row(readable) !== undefined && pending.some((line) => line.startsWith(`${readable} `)));
  assert.ok(!pending.some((line) => line.startsWith(`${odd} `)));

  const shown: string[] = [];
  await runApprovalsShow([`${namespace}/${odd}`], io(shown));
  assert.ok(
    shown.some((line) => /^Phase:\s+Unreadable$/.test(line)),
    shown.join('\n'),
  );
  assert.ok(
    shown.some((line) => /^Message:\s+this CLI cannot read the status \(phase: /.test(line)),
    shown.join('\n'),
  );

  await assert.rejects(
    runApprovalsShow([`${namespace}/${foreign}`], io([])),
    new RegExp(
      `^Error: EmbeddingApproval ${namespace}/${foreign} is not one this CLI can read \\(spec\\.request\\.api: `,
    ),
  );
});
