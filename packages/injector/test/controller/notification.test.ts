// The message approvers get: what the caller chose reaches them as text.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { approvalSpec } from '../../../core/test/support/approvals.ts';
import { notification } from '../../src/controller/approvals.ts';

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
    /alice &lt;!here&gt; asked prod-x &lt;!channel&gt; &lt;https:\/\/evil\.example\|Approve here&gt; &amp; x+…/,
  );
  assert.ok(text.length < 700, `${text.length} characters`);
});
