import { type AccessRule, modelMatcher } from '@veil/core';

export interface Caller {
  readonly subject: string;
  readonly groups: readonly string[];
}

export type AccessDecision = { allowed: true; rule: string } | { allowed: false; rule: string | null };

interface CompiledRule {
  readonly name: string;
  readonly allow: boolean;
  readonly groups: ReadonlySet<string>;
  readonly subjects: ReadonlySet<string>;
  readonly models: readonly ((model: string) => boolean)[];
}

/**
 * Access is deny by default. A matching deny rule wins over any allow rule, so
 * a team can carve an exception out of a broad grant.
 */
export function compileAccess(
  rules: readonly AccessRule[],
): (caller: Caller, model: string) => AccessDecision {
  const compiled: CompiledRule[] = rules.map((rule) => ({
    name: rule.name,
    allow: rule.action === 'allow',
    groups: new Set(rule.groups),
    subjects: new Set(rule.subjects),
    models: rule.models.map(modelMatcher),
  }));
  return (caller, model) => {
    let allowedBy: string | null = null;
    for (const rule of compiled) {
      const callerMatches =
        rule.subjects.has(caller.subject) || caller.groups.some((g) => rule.groups.has(g));
      if (!callerMatches || !rule.models.some((matches) => matches(model))) continue;
      if (!rule.allow) return { allowed: false, rule: rule.name };
      allowedBy ??= rule.name;
    }
    return allowedBy === null ? { allowed: false, rule: null } : { allowed: true, rule: allowedBy };
  };
}
