// The masking engine: policy rules compiled once into scanners per scope, then
// applied on every request. Any failure throws MaskingError; no path returns text
// that was not fully scanned.
import { z } from 'zod';
import type { MaskingRule, MaskingScope } from '../policy/schema.ts';
import { maskingRuleSchema } from '../policy/schema.ts';
import type { MaskAction } from './actions.ts';
import { ActionLog } from './actions.ts';
import { detectorPriority, detectors } from './detectors.ts';
import { MaskingError } from './errors.ts';
import type { Finder } from './finder.ts';
import { operatorFor } from './operators.ts';
import { compileUserPattern, maskingRuleProblems } from './patterns.ts';
import { maskAtPath, reaches } from './response.ts';
import type { Scanner } from './scanner.ts';
import { maskText } from './scanner.ts';

export interface MaskingOptions {
  /** HMAC key of the hash operator; at least 16 bytes when a rule hashes. */
  hashKey: Uint8Array;
}

export interface MaskTextsResult {
  texts: string[];
  actions: MaskAction[];
}

export interface MaskResponseResult {
  body: unknown;
  actions: MaskAction[];
  /**
   * Whether the rules name anything in the body (an object holds the first
   * key of a response field's path): when not, its text holds nothing they
   * name either, duplicate keys included, and may be passed on as it is.
   */
  reached: boolean;
}

export interface MaskingEngine {
  /** Whether any rule applies in this scope, so callers can skip the work. */
  hasScope(scope: MaskingScope): boolean;
  /** Masks request inputs; actions name fields `<fieldPrefix>[i]`. */
  maskTexts(texts: readonly string[], scope: 'forward' | 'audit', fieldPrefix: string): MaskTextsResult;
  /** Masks the rules' responseFields in a parsed response body, leaving the rest as is. */
  maskResponse(body: unknown, fieldPrefix?: string): MaskResponseResult;
}

/** The shortest key the `hash` operator takes; sidecars refuse a shorter shared key at start. */
export const minHashKeyBytes = 16;

function validRules(rules: readonly MaskingRule[]): MaskingRule[] {
  const parsed = z.array(maskingRuleSchema).safeParse(rules);
  if (!parsed.success) {
    const issues = parsed.error.issues.map(
      (issue) => `masking.rules.${issue.path.join('.')}: ${issue.message}`,
    );
    throw new MaskingError(`invalid masking rules: ${issues.join('; ')}`);
  }
  const problems = maskingRuleProblems(parsed.data);
  if (problems.length > 0) {
    throw new MaskingError(
      `invalid masking rules: ${problems.map((p) => `${p.path}: ${p.message}`).join('; ')}`,
    );
  }
  return parsed.data;
}

/** One rule's finders, detectors in priority order, then its patterns. */
function findersOf(rule: MaskingRule): Finder[] {
  return [
    ...detectorPriority.filter((name) => rule.detectors.includes(name)).map((name) => detectors[name]),
    ...rule.patterns.map((pattern) => compileUserPattern(pattern.name, pattern.regex)),
  ];
}

/** Scanners of the rules that apply, in rule order; a detector serves only its first rule. */
function scannersFor(
  rules: readonly MaskingRule[],
  finders: readonly Finder[][],
  applies: (rule: MaskingRule) => boolean,
  hashKey: Uint8Array,
): Scanner[] {
  const scanners: Scanner[] = [];
  const taken = new Set<Finder>();
  for (const [i, rule] of rules.entries()) {
    if (!applies(rule)) continue;
    const replace = operatorFor(rule.operator, hashKey);
    for (const finder of finders[i] ?? []) {
      if (taken.has(finder)) continue;
      taken.add(finder);
      scanners.push({ finder, rule: rule.name, operator: rule.operator, replace });
    }
  }
  return scanners;
}

/** Runs work, turning any failure into a MaskingError that carries no text. */
function guarded<T>(work: () => T): T {
  try {
    return work();
  } catch (error) {
    if (error instanceof MaskingError) throw error;
    throw new MaskingError(`masking failed: ${error instanceof Error ? error.name : 'unknown error'}`);
  }
}

export function compileMasking(rules: readonly MaskingRule[], options: MaskingOptions): MaskingEngine {
  const valid = validRules(rules);
  const hashKey = options.hashKey;
  if (valid.some((rule) => rule.operator === 'hash')) {
    if (!(hashKey instanceof Uint8Array) || hashKey.length < minHashKeyBytes) {
      throw new MaskingError(`the hash operator needs a hashKey of at least ${minHashKeyBytes} bytes`);
    }
  }
  const finders = valid.map(findersOf);
  const inScope = (scope: MaskingScope) => (rule: MaskingRule) => rule.scopes.includes(scope);
  const forward = scannersFor(valid, finders, inScope('forward'), hashKey);
  const audit = scannersFor(valid, finders, inScope('audit'), hashKey);
  const responsePaths = new Set(valid.filter(inScope('response')).flatMap((rule) => rule.responseFields));
  const response = [...responsePaths].map((path) => ({
    path: path.split('.'),
    scanners: scannersFor(
      valid,
      finders,
      (r) => inScope('response')(r) && r.responseFields.includes(path),
      hashKey,
    ),
  }));

  return {
    hasScope(scope) {
      if (scope === 'forward') return forward.length > 0;
      if (scope === 'audit') return audit.length > 0;
      return response.length > 0;
    },

    maskTexts(texts, scope, fieldPrefix) {
      return guarded(() => {
        const scanners = scope === 'forward' ? forward : scope === 'audit' ? audit : undefined;
        if (scanners === undefined)
          throw new MaskingError(`maskTexts does not serve the ${String(scope)} scope`);
        if (!Array.isArray(texts)) throw new MaskingError('texts must be an array of strings');
        const log = new ActionLog();
        const masked = texts.map((text: unknown, i) => {
          const field = `${fieldPrefix}[${i}]`;
          if (typeof text !== 'string') throw new MaskingError(`${field} is not a string`);
          return maskText(text, scanners, (scanner) => log.add(scanner, field));
        });
        return { texts: masked, actions: log.list() };
      });
    },

    maskResponse(body, fieldPrefix = '') {
      return guarded(() => {
        const log = new ActionLog();
        let result = body;
        for (const { path, scanners } of response) {
          result = maskAtPath(result, path, 0, fieldPrefix, (text, field) =>
            maskText(text, scanners, (scanner) => log.add(scanner, field)),
          );
        }
        const reached = response.some(({ path }) => reaches(body, path[0] ?? ''));
        return { body: result, actions: log.list(), reached };
      });
    },
  };
}
