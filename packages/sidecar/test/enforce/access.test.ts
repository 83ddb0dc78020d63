import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type AccessRule, accessRuleSchema } from '@veil/core';
import { compileAccess } from '../../src/enforce/access.ts';
import { regexRunsOver } from '../fixtures/regex.ts';

const rule = (fields: Record<string, unknown>): AccessRule => accessRuleSchema.parse(fields);

const alice = { subject: 'alice', groups: ['ml-team'] };
const intern = { subject: 'ian', groups: ['ml-team', 'interns'] };

describe('compileAccess', () => {
  it('denies by default: no rules, no access', () => {
    assert.deepEqual(compileAccess([])(alice, 'any'), { allowed: false, rule: null });
  });

  it('denies a caller no rule names', () => {
    const access = compileAccess([rule({ name: 'team', groups: ['ml-team'] })]);
    assert.deepEqual(access({ subject: 'eve', groups: ['sales'] }, 'm'), { allowed: false, rule: null });
    assert.deepEqual(access(alice, 'm'), { allowed: true, rule: 'team' });
  });

  it('matches by subject as well as by group', () => {
    const access = compileAccess([rule({ name: 'bob-only', subjects: ['bob'] })]);
    assert.equal(access({ subject: 'bob', groups: [] }, 'm').allowed, true);
    assert.equal(access(alice, 'm').allowed, false);
  });

  it('holds a deny rule on a model for every spelling Ollama resolves to it, on every route', () => {
    const access = compileAccess([
      rule({ name: 'team', groups: ['ml-team'] }),
      rule({ name: 'no-secret', action: 'deny', groups: ['ml-team'], models: ['secret-embed'] }),
    ]);
    for (const model of ['secret-embed', 'secret-embed:latest', 'library/secret-embed']) {
      assert.deepEqual(access(alice, model), { allowed: false, rule: 'no-secret' }, model);
    }
    assert.deepEqual(access(alice, 'other-embed:latest'), { allowed: true, rule: 'team' });
  });

  it('matches models by glob', () => {
    const access = compileAccess([
      rule({ name: 'small', groups: ['ml-team'], models: ['*-small', 'bge-*'] }),
    ]);
    assert.equal(access(alice, 'text-embedding-3-small').allowed, true);
    assert.equal(access(alice, 'bge-m3').allowed, true);
    assert.deepEqual(access(alice, 'text-embedding-3-large'), { allowed: false, rule: null });
  });

  it('matches a long model name by no regex: the caller chooses it', () => {
    const access = compileAccess([rule({ name: 'v2', groups: ['ml-team'], models: ['*-*-v2'] })]);
    const model = `${'-'.repeat(64 * 1024)}v2`;
    const runs = regexRunsOver(model, () =>
      assert.deepEqual(access(alice, model), { allowed: true, rule: 'v2' }),
    );
    assert.equal(runs, 0);
  });

  it('lets a matching deny win over any allow, before or after it', () => {
    const allow = rule({ name: 'team', groups: ['ml-team'] });
    const deny = rule({ name: 'no-ft-for-interns', action: 'deny', groups: ['interns'], models: ['ft-*'] });
    for (const rules of [
      [allow, deny],
      [deny, allow],
    ]) {
      const access = compileAccess(rules);
      assert.deepEqual(access(intern, 'ft-legal'), { allowed: false, rule: 'no-ft-for-interns' });
      assert.deepEqual(access(intern, 'base'), { allowed: true, rule: 'team' });
      assert.deepEqual(access(alice, 'ft-legal'), { allowed: true, rule: 'team' });
    }
  });

  it('names the first allow rule that matched', () => {
    const access = compileAccess([
      rule({ name: 'first', groups: ['ml-team'], models: ['a*'] }),
      rule({ name: 'second', groups: ['ml-team'] }),
    ]);
    assert.deepEqual(access(alice, 'abc'), { allowed: true, rule: 'first' });
    assert.deepEqual(access(alice, 'xyz'), { allowed: true, rule: 'second' });
  });
});
