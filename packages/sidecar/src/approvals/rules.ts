import type { IncomingHttpHeaders } from 'node:http';
import { type ApprovalRule, modelMatcher } from '@veil/core';

/** What approval rules look at in a request. */
export interface ApprovalSubject {
  readonly inputCount: number;
  readonly model: string;
  /** Header names in lower case, as Node delivers them. */
  readonly headers: IncomingHttpHeaders;
  /** The caller's groups. */
  readonly groups: readonly string[];
}

/**
 * The first rule that holds the request, if any. Every condition a rule's
 * `when` names must hold; a `when` naming none holds every request.
 */
export function matchApprovalRule(
  rules: readonly ApprovalRule[],
  request: ApprovalSubject,
): ApprovalRule | undefined {
  return rules.find((rule) => holds(rule.when, request));
}

function holds(when: ApprovalRule['when'], request: ApprovalSubject): boolean {
  const { minInputs, models, operation, groupsIn, groupsNotIn } = when;
  if (minInputs !== undefined && request.inputCount < minInputs) return false;
  if (models !== undefined && !models.some((pattern) => modelMatcher(pattern)(request.model))) {
    return false;
  }
  if (operation !== undefined) {
    const sent = headerValues(request.headers, operation.header);
    if (!sent.some((value) => operation.values.includes(value))) return false;
  }
  if (groupsIn !== undefined && !request.groups.some((group) => groupsIn.includes(group))) return false;
  if (groupsNotIn !== undefined && request.groups.some((group) => groupsNotIn.includes(group))) return false;
  return true;
}

/**
 * Every value sent under a header. Node joins repeated headers with ", ", so
 * the list is split again: otherwise `search` and `reindex` sent together
 * would read as "search, reindex" and slip past a rule asking for `reindex`.
 */
function headerValues(headers: IncomingHttpHeaders, name: string): string[] {
  const raw = headers[name.toLowerCase()];
  if (raw === undefined) return [];
  const joined = Array.isArray(raw) ? raw : [raw];
  return joined.flatMap((value) => value.split(',')).map((value) => value.trim());
}
