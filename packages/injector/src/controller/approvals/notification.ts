// The Slack-compatible message sent for each new approval, and its sender.
import { isPlain } from '@veil/core';
import { type Dispatcher, request } from 'undici';
import type { Stored } from './store.ts';

export type Notification = { text: string; blocks?: unknown[] };

/** Sends one notification to `url`. */
export type Notifier = (url: string, message: Notification) => Promise<void>;

/**
 * Slack-compatible: counts, model and who asked; never inputs, not even the
 * masked summary. What Veil vouches for (the approval, its rule, counts,
 * approvers and expiry) comes first, what the caller chose after it, quoted
 * unless plain: a model named "bge-small (tei) for 12 inputs (480 bytes) under
 * rule small; ..." must not read as the counts of the request.
 */
export function notification(stored: Pick<Stored, 'metadata' | 'spec'>): Notification {
  const { namespace, name } = stored.metadata;
  const { request, requester, approvers, expiresAt, rule } = stored.spec;
  const text =
    `Embedding request held for approval: ${namespace}/${name}, under rule ${rule}: ` +
    `${request.inputCount} inputs (${request.bytes} bytes); needs ${approvers.count} approver(s) from ` +
    `${approvers.groups.join(', ')} before ${expiresAt}. Requested by ${callerText(requester.subject)} ` +
    `for model ${callerText(request.model)} over API ${callerText(request.api)}. ` +
    `Decide with: veil approvals approve ${namespace}/${name} --reason TEXT (or deny).`;
  return { text, blocks: [{ type: 'section', text: { type: 'mrkdwn', text } }] };
}

const maxCallerText = 200;

/**
 * A string the caller chose (its subject, the model it named, the API it says
 * it spoke), as text: quoted unless plain, so it cannot pass for what Veil
 * wrote around it; and since Slack reads `<!channel>` and `<https://…|label>`
 * in a message as a mention and a disguised link, `&`, `<` and `>` are
 * escaped, and a long one is cut.
 */
function callerText(value: string): string {
  if (isPlain(value) && value.length <= maxCallerText) return value;
  const cut = value.length > maxCallerText ? `${value.slice(0, maxCallerText)}…` : value;
  return JSON.stringify(cut).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/**
 * Posts each notification as JSON. The dispatcher is for endpoints behind a
 * private CA; by default the system's trusted CAs apply.
 */
export function httpsNotifier(dispatcher?: Dispatcher): Notifier {
  return async (url, message) => {
    const response = await request(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(message),
      signal: AbortSignal.timeout(10_000),
      ...(dispatcher === undefined ? {} : { dispatcher }),
    });
    await response.body.dump();
    if (response.statusCode < 200 || response.statusCode >= 300) {
      throw new Error(`the notification endpoint answered ${response.statusCode}`);
    }
  };
}
