import { readFile } from 'node:fs/promises';
import {
  type EmbeddingPolicy,
  embeddingPolicySchema,
  LOOPBACK_KEYS_RISK,
  loopbackKeySources,
} from '@veil/core';
import { parseAllDocuments } from 'yaml';
import { fsReason } from '../fserror.ts';

export interface PolicyProblem {
  readonly path: string;
  readonly message: string;
}

/** `warnings`: what a valid policy allows yet is unsafe in a cluster; lint prints them, they fail nothing. */
export type LoadedPolicy =
  | { ok: true; policy: EmbeddingPolicy; warnings: PolicyProblem[] }
  | { ok: false; problems: PolicyProblem[] };

/** Reads an EmbeddingPolicy manifest (YAML or JSON) and reports every problem with its field path. */
export async function loadPolicyFile(file: string): Promise<LoadedPolicy> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    return {
      ok: false,
      problems: [
        {
          // The caller prints the file name before each problem already.
          path: '(file)',
          message: fsReason(error),
        },
      ],
    };
  }
  const documents = parseAllDocuments(text);
  if (!Array.isArray(documents) || documents.length !== 1) {
    return { ok: false, problems: [{ path: '(file)', message: 'expected exactly one YAML document' }] };
  }
  const [document] = documents;
  if (!document || document.errors.length > 0) {
    return {
      ok: false,
      problems: (document?.errors ?? []).map((e) => ({ path: '(yaml)', message: firstLine(e.message) })),
    };
  }
  return validatePolicy(document.toJS());
}

/**
 * The parser's reason and position, without the excerpt of the file it adds
 * below them: each problem is one "FILE: field.path: message" line.
 */
function firstLine(message: string): string {
  return (message.split('\n')[0] ?? message).replace(/:$/, '');
}

export function validatePolicy(raw: unknown): LoadedPolicy {
  const parsed = embeddingPolicySchema.safeParse(raw);
  if (!parsed.success) {
    return {
      ok: false,
      problems: parsed.error.issues.map((issue) => ({
        path: issue.path.join('.') || '(policy)',
        message: issue.message,
      })),
    };
  }
  return { ok: true, policy: parsed.data, warnings: policyWarnings(parsed.data) };
}

function policyWarnings(policy: EmbeddingPolicy): PolicyProblem[] {
  return loopbackKeySources(policy.spec.authentication).map((source) => ({
    path: `spec.${source.path}`,
    message: LOOPBACK_KEYS_RISK,
  }));
}
