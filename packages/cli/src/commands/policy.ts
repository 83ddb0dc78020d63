import { policyHash } from '@veil/core';
import { CliError, type Command, parseOptions } from '../command.ts';
import { loadPolicyFile } from '../policy/load.ts';

export const policyLintCommand: Command = {
  summary: 'check an EmbeddingPolicy file; print every problem with its field path',
  help: `Usage: veil policy lint FILE...

Validates each EmbeddingPolicy manifest (YAML or JSON) against the v1alpha1
schema, including RE2 compilation of user masking patterns. Prints one line per
problem as "FILE: field.path: message" and exits 1 if any file has problems
(or cannot be read); prints the content hash of each valid policy and exits 0
when all are valid; exits 2 on a usage error (no FILE). What a valid policy
allows but is unsafe in a cluster (keys read over plain http on loopback) is
printed as "FILE: warning: field.path: message" and changes no exit code.`,
  async run(args) {
    const { positionals } = parseOptions('policy lint', args, {}, true);
    if (positionals.length === 0)
      throw new CliError('policy lint: name at least one FILE (see veil policy lint --help)');
    let failed = false;
    for (const file of positionals) {
      const loaded = await loadPolicyFile(file);
      if (loaded.ok) {
        for (const warning of loaded.warnings)
          console.log(`${file}: warning: ${warning.path}: ${warning.message}`);
        console.log(`${file}: ok (${loaded.policy.metadata.name}, ${policyHash(loaded.policy.spec)})`);
        continue;
      }
      failed = true;
      for (const problem of loaded.problems) console.log(`${file}: ${problem.path}: ${problem.message}`);
    }
    return failed ? 1 : 0;
  },
};
