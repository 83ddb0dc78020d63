// `veil approvals list` and `show` print what requesters and approvers wrote:
// an escape sequence in it must reach the approver's terminal as text.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { approvalRuleSchema } from '@veil/core';
import type { Approval } from '../src/approvals/client.ts';
import { renderApproval, renderTable } from '../src/approvals/render.ts';
import { DevApprovals } from '../src/dev/approvals.ts';

const hostile = 'demo\u001b]0;PWNED\u0007\u001b[2J';

type OpenRequest = Parameters<DevApprovals['open']>[0];

/** A `veil dev` approval service with one rule, `bulk`, and an approval opened on it for `request`. */
async function openBulk(
  approverCount: number,
  request: Pick<OpenRequest, 'requester' | 'request'>,
): Promise<{ approvals: DevApprovals; name: string }> {
  const approvals = new DevApprovals({
    namespace: 'local',
    policyName: 'default',
    rules: [
      approvalRuleSchema.parse({
        name: 'bulk',
        when: { minInputs: 10 },
        approvers: { groups: ['ml-approvers'], count: approverCount },
      }),
    ],
  });
  const view = await approvals.open({
    policy: 'default',
    rule: 'bulk',
    pod: { name: 'veil-dev' },
    ...request,
  });
  return { approvals, name: view.name };
}

/** A held request whose requester chose every string it could, denied by an approver who did too. */
async function hostileApproval(): Promise<Approval> {
  const { approvals, name } = await openBulk(1, {
    requester: { issuer: 'http://127.0.0.1:1\u009b2J', subject: 'alice\u001b[1A', groups: ['ml\u0007'] },
    request: {
      api: 'openai',
      model: hostile,
      inputCount: 12,
      bytes: 300,
      digest: 'sha256:aa',
      operation: 'op\u001bc',
      summary: 'sum\u001b[2J',
    },
  });
  approvals.decide(
    'local',
    name,
    { username: 'bob\u001b[2K', groups: ['ml-approvers'] },
    {
      decision: 'deny',
      // U+202E turns what follows around on the screen, U+2028 starts a line, U+200B and U+FEFF hide.
      reason: 'no\u001b[2J\u009b\u202e\u2028\ufeff\u200b',
    },
  );
  const approval = approvals.get('local', name);
  await approvals.close();
  assert.ok(approval);
  return approval;
}

function assertPrintable(lines: readonly string[]): void {
  for (const line of lines) assert.doesNotMatch(line, /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u, JSON.stringify(line));
}

test('list shows every cell printable, the hostile ones quoted and escaped', async () => {
  const lines = renderTable([await hostileApproval()], true);
  assertPrintable(lines);
  assert.ok(lines[1]?.includes('"alice\\u001b[1A"'), lines[1]);
  assert.ok(lines[1]?.includes('"demo\\u001b]0;PWNED\\u0007\\u001b[2J"'), lines[1]);
});

test('show shows every field printable: request, requester, approvers and their reasons', async () => {
  const lines = renderApproval(await hostileApproval());
  assertPrintable(lines);
  const text = lines.join('\n');
  assert.match(
    text,
    /^Requester: {2}"alice\\u001b\[1A" \(issuer "http:\/\/127\.0\.0\.1:1\\u009b2J"; groups "ml\\u0007"\)$/m,
  );
  assert.match(
    text,
    /^Request: {4}openai "demo\\u001b\]0;PWNED\\u0007\\u001b\[2J", 12 inputs, 300 bytes, operation "op\\u001bc"$/m,
  );
  assert.match(text, /^Summary: {4}"sum\\u001b\[2J"$/m);
  assert.match(text, / {2}deny {5}"bob\\u001b\[2K" {2}"no\\u001b\[2J\\u009b\\u202e\\u2028\\ufeff\\u200b"$/m);
});

/** A 50,000-input request needing two approvers, whose requester chose a model that reads as columns or clauses. */
async function spoofingApproval(model: string, summary: string): Promise<Approval> {
  const { approvals, name } = await openBulk(2, {
    requester: { issuer: 'https://issuer.example', subject: 'alice', groups: ['ml'] },
    request: {
      api: 'openai',
      model,
      inputCount: 50_000,
      bytes: 2_000_000,
      digest: 'sha256:aa',
      operation: 'reindex, 12 inputs',
      summary,
    },
  });
  const approval = approvals.get('local', name);
  await approvals.close();
  assert.ok(approval);
  return approval;
}

test("a requester's model cannot pass for the counts and expiry beside it: quoted unless plain", async () => {
  const fake = 'bge-small   12      0/1   2026-12-01T03:00:00.000Z';
  const approval = await spoofingApproval(fake, '12 input(s), 480 bytes, model bge-small');
  const [header, row] = renderTable([approval], false);
  assert.match(header ?? '', /MODEL/);
  assert.match(row ?? '', / "bge-small {3}12 {6}0\/1 {3}2026-12-01T03:00:00\.000Z" +50000 +0\/2 /);

  const text = renderApproval(approval).join('\n');
  assert.match(
    text,
    /^Request: {4}openai "bge-small {3}12 .*Z", 50000 inputs, 2000000 bytes, operation "reindex, 12 inputs"$/m,
  );
  assert.match(text, /^Summary: {4}"12 input\(s\), 480 bytes, model bge-small"$/m);
  // A plain name stays bare.
  const [, plainRow] = renderTable([await spoofingApproval('org/bge-small:v1.5', 'x')], false);
  assert.match(plainRow ?? '', / org\/bge-small:v1\.5 +50000 +0\/2 /);
});
