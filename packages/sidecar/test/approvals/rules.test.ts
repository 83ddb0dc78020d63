import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type ApprovalRule, approvalRuleSchema } from '@veil/core';
import { type ApprovalSubject, matchApprovalRule } from '../../src/approvals/rules.ts';
import { regexRunsOver } from '../fixtures/regex.ts';

const rule = (name: string, when: unknown): ApprovalRule =>
  approvalRuleSchema.parse({ name, when, approvers: { groups: ['approvers'] } });

const request = (overrides: Partial<ApprovalSubject> = {}): ApprovalSubject => ({
  inputCount: 1,
  model: 'text-embedding-3-small',
  headers: {},
  groups: ['ml-team'],
  ...overrides,
});

describe('matchApprovalRule', () => {
  it('matches nothing when there are no rules', () => {
    assert.equal(matchApprovalRule([], request()), undefined);
  });

  it('holds every request under a rule whose when names no condition', () => {
    const always = rule('always', {});
    assert.equal(matchApprovalRule([always], request()), always);
  });

  it('holds from minInputs on, not below', () => {
    const bulk = rule('bulk', { minInputs: 100 });
    assert.equal(matchApprovalRule([bulk], request({ inputCount: 99 })), undefined);
    assert.equal(matchApprovalRule([bulk], request({ inputCount: 100 })), bulk);
  });

  it('matches models by glob', () => {
    const finetunes = rule('finetunes', { models: ['ft-*', 'exact-model'] });
    assert.equal(matchApprovalRule([finetunes], request({ model: 'ft-legal-v2' })), finetunes);
    assert.equal(matchApprovalRule([finetunes], request({ model: 'exact-model' })), finetunes);
    assert.equal(matchApprovalRule([finetunes], request({ model: 'exact-model-2' })), undefined);
    assert.equal(matchApprovalRule([finetunes], request({ model: 'base-ft-x' })), undefined);
  });

  it('matches a long model name by no regex: the caller chooses it', () => {
    const v2 = rule('v2', { models: ['*-*-v2'] });
    const model = `${'-'.repeat(64 * 1024)}v2`;
    const runs = regexRunsOver(model, () => assert.equal(matchApprovalRule([v2], request({ model })), v2));
    assert.equal(runs, 0);
  });

  it('matches the operation header by name in any case, value exactly', () => {
    const reindex = rule('reindex', { operation: { header: 'X-Veil-Operation', values: ['reindex'] } });
    assert.equal(
      matchApprovalRule([reindex], request({ headers: { 'x-veil-operation': 'reindex' } })),
      reindex,
    );
    assert.equal(
      matchApprovalRule([reindex], request({ headers: { 'x-veil-operation': 'Reindex' } })),
      undefined,
    );
    assert.equal(matchApprovalRule([reindex], request()), undefined);
  });

  it('finds the operation among repeated header values, joined or not', () => {
    const reindex = rule('reindex', { operation: { header: 'x-veil-operation', values: ['reindex'] } });
    assert.equal(
      matchApprovalRule([reindex], request({ headers: { 'x-veil-operation': 'search, reindex' } })),
      reindex,
    );
    assert.equal(
      matchApprovalRule([reindex], request({ headers: { 'x-veil-operation': ['search', 'reindex'] } })),
      reindex,
    );
  });

  it('matches callers in groupsIn and spares callers in groupsNotIn', () => {
    const interns = rule('interns', { groupsIn: ['interns'] });
    const outsiders = rule('outsiders', { groupsNotIn: ['ml-leads'] });
    assert.equal(matchApprovalRule([interns], request({ groups: ['interns', 'ml-team'] })), interns);
    assert.equal(matchApprovalRule([interns], request()), undefined);
    assert.equal(matchApprovalRule([outsiders], request()), outsiders);
    assert.equal(matchApprovalRule([outsiders], request({ groups: ['ml-team', 'ml-leads'] })), undefined);
    assert.equal(matchApprovalRule([outsiders], request({ groups: [] })), outsiders);
  });

  it('needs every condition of a rule to hold', () => {
    const strict = rule('strict', {
      minInputs: 10,
      models: ['ft-*'],
      groupsIn: ['ml-team'],
      operation: { header: 'x-op', values: ['bulk'] },
    });
    const all = request({ inputCount: 10, model: 'ft-a', headers: { 'x-op': 'bulk' } });
    assert.equal(matchApprovalRule([strict], all), strict);
    assert.equal(matchApprovalRule([strict], { ...all, inputCount: 9 }), undefined);
    assert.equal(matchApprovalRule([strict], { ...all, model: 'base' }), undefined);
    assert.equal(matchApprovalRule([strict], { ...all, groups: ['other'] }), undefined);
    assert.equal(matchApprovalRule([strict], { ...all, headers: {} }), undefined);
  });

  it('returns the first rule that holds, in policy order', () => {
    const first = rule('first', { minInputs: 5 });
    const second = rule('second', { minInputs: 1 });
    assert.equal(matchApprovalRule([first, second], request({ inputCount: 10 })), first);
    assert.equal(matchApprovalRule([first, second], request({ inputCount: 2 })), second);
  });
});
