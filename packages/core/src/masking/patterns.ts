// User patterns from the policy, compiled with RE2 (re2js): matching time is
// linear in the text whatever the pattern, so a policy cannot stall the proxy.
// RE2 has no backreferences or lookaround; such patterns are rejected at lint.
import { RE2JS } from 're2js';
import type { MaskingRule } from '../policy/schema.ts';
import { MaskingError } from './errors.ts';
import type { Finder, Span } from './finder.ts';
import { identity } from './finder.ts';

export interface PatternProblem {
  /** Field path in the policy spec, e.g. `masking.rules.0.patterns.1.regex`. */
  path: string;
  message: string;
}

type PatternRules = readonly Pick<MaskingRule, 'patterns'>[];

/** Why RE2 cannot use this pattern, or null when it can. */
function patternProblem(regex: string): string | null {
  let compiled: RE2JS;
  try {
    compiled = RE2JS.compile(regex);
  } catch (error) {
    return `not a valid RE2 pattern: ${error instanceof Error ? error.message : String(error)}`;
  }
  // An empty match would mask nothing and usually means a misplaced `*` or `?`.
  if (compiled.testExact('')) return 'pattern matches the empty string';
  return onlyEmptyMatches(compiled)
    ? 'pattern matches only the empty string inside a text (a lone anchor such as \\b)'
    : null;
}

/** Short texts where a pattern that matches only between characters, as `\b` does, matches. */
const probeTexts = ['a', 'a b', '1', 'A-1'];

/** Whether the pattern matches the probe texts, and only ever with empty matches. */
function onlyEmptyMatches(compiled: RE2JS): boolean {
  let matched = false;
  for (const text of probeTexts) {
    const matcher = compiled.matcher(text);
    while (matcher.find()) {
      if (matcher.end() > matcher.start()) return false;
      matched = true;
    }
  }
  return matched;
}

/** Problems with the user patterns of these rules, for `veil policy lint`. */
export function compilePatternProblems(rules: PatternRules, basePath = 'masking.rules'): PatternProblem[] {
  const problems: PatternProblem[] = [];
  for (const [r, rule] of rules.entries()) {
    for (const [p, pattern] of rule.patterns.entries()) {
      const message = patternProblem(pattern.regex);
      if (message !== null) problems.push({ path: `${basePath}.${r}.patterns.${p}.regex`, message });
    }
  }
  return problems;
}

/** Problems with masking rules beyond their schema: unusable patterns, repeated names. */
export function maskingRuleProblems(
  rules: readonly Pick<MaskingRule, 'name' | 'patterns'>[],
  basePath = 'masking.rules',
): PatternProblem[] {
  const problems = compilePatternProblems(rules, basePath);
  const seen = new Set<string>();
  for (const [r, rule] of rules.entries()) {
    // Mask actions name their rule, so two rules of one name would blur the audit trail.
    if (seen.has(rule.name)) problems.push({ path: `${basePath}.${r}.name`, message: 'duplicate rule name' });
    seen.add(rule.name);
  }
  return problems;
}

function findAll(compiled: RE2JS, text: string): Span[] {
  const spans: Span[] = [];
  const matcher = compiled.matcher(text);
  while (matcher.find()) {
    const start = matcher.start();
    const end = matcher.end();
    if (end > start) spans.push({ start, end });
  }
  return spans;
}

/** `[EMPLOYEE_ID]` for a pattern named employee-id. */
function patternLabel(name: string): string {
  return name.toUpperCase().replaceAll('-', '_');
}

export function compileUserPattern(name: string, regex: string): Finder {
  const problem = patternProblem(regex);
  if (problem !== null) throw new MaskingError(`masking pattern ${name}: ${problem}`);
  const compiled = RE2JS.compile(regex);
  return {
    id: `pattern:${name}`,
    label: patternLabel(name),
    // The DFA-only test is much cheaper than collecting positions.
    mayMatch: (text) => compiled.test(text),
    find: (text) => findAll(compiled, text),
    normalize: identity,
  };
}
