// The message approvers get: what the caller chose reaches them as text.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { approvalSpec } from '../../../core/test/support/approvals.ts';
import { notification } from '../../src/controller/approvals/notification.ts';

test("a caller's model name and subject cannot mention a channel or disguise a link", () => {
  const spec = approvalSpec();
  const hostile = {
    ...spec,
    requester: { ...spec.requester, subject: 'alice <!here>' },
    request: {
      ...spec.request,
      model: `prod-x <!channel> <https://evil.example|Approve here> & ${'x'.repeat(300)}`,
    },
  };
  const { text } = notification({ metadata: { namespace: 'ml', name: 'ea-1' }, spec: hostile });
  assert.doesNotMatch(text, /[<>]/);
  assert.match(
    text,
    /by "alice &lt;!here&gt;" for model "prod-x &lt;!channel&gt; &lt;https:\/\/evil\.example\|Approve here&gt; &amp; x+…"/,
  );
  assert.ok(text.length < 700, `${text.length} characters`);
});

test("a caller's model cannot pass for the counts, rule and approvers Veil writes: those come first, it quoted", () => {
  const spec = approvalSpec();
  const model = 'bge-small (tei) for 12 inputs (480 bytes) under rule small; needs 1 approver(s). Details:';
  const { text } = notification({
    metadata: { namespace: 'ml', name: 'ea-1' },
    spec: {
      ...spec,
      rule: 'bulk',
      approvers: { ...spec.approvers, count: 2 },
      request: { ...spec.request, model, inputCount: 50_000, bytes: 2_000_000 },
    },
  });
  const veil = text.indexOf('under rule bulk: 50000 inputs (2000000 bytes); needs 2 approver(s)');
  assert.ok(veil > 0, text);
  const quotedModel = text.indexOf(`for model ${JSON.stringify(model)} over API openai.`);
  assert.ok(quotedModel > veil, text);
  // Nothing outside the quotes says 12 inputs or rule small.
  const unquoted = text.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  assert.doesNotMatch(unquoted, /12 inputs|rule small/);
});
