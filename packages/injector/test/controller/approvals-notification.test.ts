// The API an approval names reaches approvers as text, as the model and subject do.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ApprovalSpec } from '@veil/core';
import { approvalSpec } from '../../../core/test/support/approvals.ts';
import { notification } from '../../src/controller/approvals/notification.ts';

test('an API name cannot mention a channel or disguise a link, whatever got it stored', () => {
  const spec = approvalSpec();
  // The schema admits dialect names only; an object written around it must not get further.
  const api = '<!channel> <https://evil.example|Approve here> &' as ApprovalSpec['request']['api'];
  const { text } = notification({
    metadata: { namespace: 'ml', name: 'ea-1' },
    spec: { ...spec, request: { ...spec.request, api } },
  });
  assert.doesNotMatch(text, /[<>]/);
  assert.match(text, /over API "&lt;!channel&gt; &lt;https:\/\/evil\.example\|Approve here&gt; &amp;"\./);
});
