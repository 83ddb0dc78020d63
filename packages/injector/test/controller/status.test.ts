import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { PodSync } from '../../src/controller/distributor.ts';
import { judge, type PolicyStatus, type PolicyView } from '../../src/controller/policies.ts';
import { policyStatus } from '../../src/controller/status.ts';

const now = new Date('2026-01-02T03:04:05.678Z');
const valid = judge({});

function view(overrides: Partial<PolicyView> = {}): PolicyView {
  return {
    key: 'ml/default',
    namespace: 'ml',
    name: 'default',
    uid: 'u',
    generation: 3,
    resourceVersion: '10',
    verdict: valid,
    status: undefined,
    ...overrides,
  };
}

function pod(name: string, hash: string | undefined, problem?: string): PodSync {
  return { uid: name, name, hash, problem, unchecked: false };
}

const hash = valid.valid ? valid.hash : '';

test('every pod on the version: Ready, with the counts for the printer column', () => {
  const status = policyStatus({
    view: view(),
    enforcedHash: hash,
    pods: [pod('a', hash), pod('b', hash)],
    now,
  });
  assert.deepEqual(status, {
    observedGeneration: 3,
    contentHash: hash,
    podsInSync: 2,
    podsTotal: 2,
    sync: '2/2',
    conditions: [
      {
        type: 'Ready',
        status: 'True',
        reason: 'Synced',
        message: `all 2 pods enforce ${hash}`,
        observedGeneration: 3,
        lastTransitionTime: '2026-01-02T03:04:05Z',
      },
    ],
  });
});

test('no pods yet is ready, and says so', () => {
  const status = policyStatus({ view: view(), enforcedHash: hash, pods: [], now });
  assert.equal(status.sync, '0/0');
  assert.equal(status.conditions?.[0]?.status, 'True');
  assert.match(status.conditions?.[0]?.message ?? '', /no running injected pod/);
});

test('pods behind: Syncing, naming them and why', () => {
  const status = policyStatus({
    view: view(),
    enforcedHash: hash,
    pods: [pod('a', hash), pod('b', 'sha256:old', 'refused: bad'), pod('c', undefined)],
    now,
  });
  assert.equal(status.sync, '1/3');
  const [ready] = status.conditions ?? [];
  assert.equal(ready?.status, 'False');
  assert.equal(ready?.reason, 'Syncing');
  assert.equal(ready?.message, `1 of 3 pods enforce ${hash}; waiting for b (refused: bad), c`);
});

test('a pod last seen on the version but now unreachable is not in sync', () => {
  const status = policyStatus({
    view: view(),
    enforcedHash: hash,
    pods: [pod('a', hash), pod('b', hash, 'unreachable: connection refused')],
    now,
  });
  assert.equal(status.podsInSync, 1);
  assert.equal(status.conditions?.[0]?.reason, 'Syncing');
  assert.equal(
    status.conditions?.[0]?.message,
    `1 of 2 pods enforce ${hash}; waiting for b (unreachable: connection refused)`,
  );
});

test('a long wait lists a few pods and counts the rest', () => {
  const pods = Array.from({ length: 9 }, (_, i) => pod(`p${i}`, undefined));
  const message = policyStatus({ view: view(), enforcedHash: hash, pods, now }).conditions?.[0]?.message;
  assert.match(message ?? '', /waiting for p0, p1, p2, p3, p4 and 4 more$/);
});

const bad = judge({
  limits: { maxInputsPerRequest: 0 },
  masking: {
    rules: [
      { name: 'x', patterns: [{ name: 'p', regex: '(?<=a)b' }], operator: 'redact', scopes: ['forward'] },
    ],
  },
});

test('an invalid spec: not Ready, every field path named, the enforced version kept', () => {
  assert.equal(bad.valid, false);
  const status = policyStatus({
    view: view({ verdict: bad }),
    enforcedHash: 'sha256:previous',
    pods: [pod('a', 'sha256:previous'), pod('b', 'sha256:previous')],
    now,
  });
  assert.equal(status.contentHash, 'sha256:previous');
  assert.equal(status.sync, '2/2');
  const [ready] = status.conditions ?? [];
  assert.equal(ready?.reason, 'Invalid');
  assert.equal(ready?.status, 'False');
  assert.match(ready?.message ?? '', /spec\.limits\.maxInputsPerRequest: /);
  assert.match(ready?.message ?? '', /spec\.masking\.rules\[0\]\.patterns\[0\]\.regex: /);
  assert.match(ready?.message ?? '', /sidecars keep the previous version sha256:previous:/);
});

test('an invalid spec this replica never saw valid: running pods keep the stored version, new pods may get none', () => {
  const stored: PolicyStatus = { contentHash: 'sha256:previous', podsInSync: 2, podsTotal: 2, sync: '2/2' };
  const status = policyStatus({
    view: view({ verdict: bad, status: stored }),
    enforcedHash: undefined,
    pods: [pod('a', 'sha256:previous'), pod('b', 'sha256:previous')],
    now,
  });
  assert.equal(status.contentHash, 'sha256:previous');
  assert.equal(status.sync, '2/2');
  const [ready] = status.conditions ?? [];
  assert.equal(ready?.reason, 'Invalid');
  assert.match(
    ready?.message ?? '',
    /^the spec is invalid, so it is not pushed; running pods keep the previous version sha256:previous, but new pods may start without a policy until the spec is valid, as the controller has seen no valid version since it started: spec\.limits/,
  );
  const never = policyStatus({ view: view({ verdict: bad }), enforcedHash: undefined, pods: [], now });
  assert.match(
    never.conditions?.[0]?.message ?? '',
    /running pods keep their previous policy, but new pods may start without a policy until the spec is valid/,
  );
});

test('the transition time moves only when the condition flips; other conditions stay', () => {
  const earlier = '2025-12-31T00:00:00Z';
  const stored: PolicyStatus = {
    conditions: [
      { type: 'Ready', status: 'True', reason: 'Synced', message: 'old', lastTransitionTime: earlier },
      { type: 'Audited', status: 'True', reason: 'Other', message: 'kept', lastTransitionTime: earlier },
    ],
  };
  const same = policyStatus({
    view: view({ status: stored }),
    enforcedHash: hash,
    pods: [pod('a', hash)],
    now,
  });
  assert.equal(same.conditions?.find((c) => c.type === 'Ready')?.lastTransitionTime, earlier);
  assert.deepEqual(
    same.conditions?.find((c) => c.type === 'Audited'),
    stored.conditions?.[1],
  );
  const flipped = policyStatus({
    view: view({ status: stored }),
    enforcedHash: hash,
    pods: [pod('a', 'x')],
    now,
  });
  assert.equal(
    flipped.conditions?.find((c) => c.type === 'Ready')?.lastTransitionTime,
    '2026-01-02T03:04:05Z',
  );
});
