import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type DesiredPolicy, Distributor } from '../../src/controller/distributor.ts';
import { controllerKeyFromJwk, generateControllerJwk } from '../../src/controller/keys.ts';
import type { PodView } from '../../src/controller/pods.ts';
import { SidecarClient } from '../../src/controller/push.ts';
import { FakeSidecar } from './support/sidecar.ts';

const key = await controllerKeyFromJwk(await generateControllerJwk());
const client = new SidecarClient({ key, identity: 'controller-0', timeoutMs: 2000 });
const running: { distributors: Distributor[]; sidecars: FakeSidecar[] } = { distributors: [], sidecars: [] };

after(async () => {
  for (const distributor of running.distributors) distributor.deactivate();
  await Promise.all(running.sidecars.map((s) => s.stop()));
});

function version(n: number): DesiredPolicy {
  const hash = `sha256:v${n}`;
  return { name: 'default', hash, spec: { hash } };
}

async function sidecars(count: number, hash?: string): Promise<FakeSidecar[]> {
  const started = await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const sidecar = new FakeSidecar(`uid-${i}-${Math.random().toString(36).slice(2)}`, key, hash);
      await sidecar.start();
      return sidecar;
    }),
  );
  running.sidecars.push(...started);
  return started;
}

function view(sidecar: FakeSidecar, incarnation = '0', terminating = false): PodView {
  return {
    uid: sidecar.uid,
    namespace: 'ml',
    name: `pod-${sidecar.uid}`,
    policyKey: 'ml/default',
    adminUrl: sidecar.adminUrl,
    incarnation,
    terminating,
  };
}

/** `exists`: whether the controller's cache holds the policy (valid or not). */
function distributor(changes: string[] = [], exists: () => boolean = () => true): Distributor {
  const made = new Distributor({
    client,
    policyExists: exists,
    debounceMs: 20,
    maxDebounceMs: 200,
    retry: { initialMs: 10, maxMs: 40 },
    onPodChange: (key) => changes.push(key),
  });
  running.distributors.push(made);
  return made;
}

/**
 * A leading distributor with version 1 of ml/default desired, once it has
 * asked the pods counted in the status what they enforce. `policy.exists` is
 * whether the policy exists, for the test to switch.
 */
async function leadingOver(...views: PodView[]): Promise<{ d: Distributor; policy: { exists: boolean } }> {
  const policy = { exists: true };
  const d = distributor([], () => policy.exists);
  d.setDesired('ml/default', version(1));
  d.activate();
  for (const podView of views) d.upsertPod(podView);
  await until('checked', () => d.podsOf('ml/default')[0]?.unchecked === false);
  return { d, policy };
}

async function until(what: string, probe: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!probe()) {
    if (performance.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(5);
  }
}

test('a pod already enforcing the version is asked, never pushed', async () => {
  const [pod] = await sidecars(1, 'sha256:v1');
  assert.ok(pod);
  const changes: string[] = [];
  const d = distributor(changes);
  d.setDesired('ml/default', version(1));
  d.activate();
  d.upsertPod(view(pod));
  await until('checked', () => d.podsOf('ml/default')[0]?.unchecked === false);
  assert.equal(pod.gets, 1);
  assert.equal(pod.puts.length, 0);
  assert.deepEqual(d.podsOf('ml/default'), [
    { uid: pod.uid, name: `pod-${pod.uid}`, hash: 'sha256:v1', problem: undefined, unchecked: false },
  ]);
  assert.ok(changes.includes('ml/default'));
});

test('nothing is pushed while the policy cache is out of sync: the version may be stale', async () => {
  const [pod] = await sidecars(1, 'sha256:v2');
  assert.ok(pod);
  const cache = { synced: false };
  const d = new Distributor({
    client,
    policyExists: () => true,
    cacheInSync: () => cache.synced,
    debounceMs: 20,
    retry: { initialMs: 10, maxMs: 40 },
  });
  running.distributors.push(d);
  d.setDesired('ml/default', version(1));
  d.activate();
  d.upsertPod(view(pod));
  await until(
    'asked again after waiting',
    () => pod.gets >= 1 && d.podsOf('ml/default')[0]?.problem !== undefined,
  );
  await sleep(100);
  assert.equal(pod.puts.length, 0, 'no version from a cache out of sync');
  assert.match(d.podsOf('ml/default')[0]?.problem ?? '', /policy cache is not in sync/);
  cache.synced = true;
  await until('pushed once in sync', () => d.podsOf('ml/default')[0]?.hash === 'sha256:v1');
  assert.equal(pod.puts.length, 1);
});

test('a pod behind gets one push, with a token for that pod and that policy alone', async () => {
  const [pod] = await sidecars(1, 'sha256:v0');
  assert.ok(pod);
  const d = distributor();
  d.activate();
  d.setDesired('ml/default', version(1));
  d.upsertPod(view(pod));
  await until('acknowledged', () => d.podsOf('ml/default')[0]?.hash === 'sha256:v1');
  assert.equal(pod.puts.length, 1);
  const claims = pod.puts[0]?.claims;
  assert.ok(claims);
  assert.equal(claims.iss, 'veil-controller');
  assert.equal(claims.aud, `veil-sidecar:${pod.uid}`);
  assert.equal(claims.sub, 'controller-0');
  assert.deepEqual(claims.policy, { name: 'default', hash: 'sha256:v1' }, 'bound to what it carries');
  assert.deepEqual(pod.puts[0]?.spec, version(1).spec, 'the body is the spec alone');
  assert.ok((claims.exp ?? 0) - (claims.iat ?? 0) <= 60, 'lives a minute at most');
  assert.equal(pod.puts[0]?.name, 'default');
});

test('a push leaves out the notification URLs of approval rules, which only the controller uses', async () => {
  const [pod] = await sidecars(1, 'sha256:v0');
  assert.ok(pod);
  const rule = { name: 'bulk', approvers: { groups: ['leads'] } };
  // The fake sidecar takes the hash a test spec carries for its own.
  const hash = 'sha256:v1';
  const spec = {
    hash,
    approvals: { rules: [{ ...rule, notify: { url: 'https://hooks.slack.example/T0/B0/x' } }] },
  };
  const d = distributor();
  d.activate();
  d.setDesired('ml/default', { name: 'default', hash, spec });
  d.upsertPod(view(pod));
  await until('acknowledged', () => d.podsOf('ml/default')[0]?.hash === hash);
  assert.deepEqual(pod.puts[0]?.spec, { hash, approvals: { rules: [rule] } });
});

test('a burst of versions reaches each pod as one push of the last', async () => {
  const pods = await sidecars(3, 'sha256:v1');
  const d = distributor();
  d.setDesired('ml/default', version(1));
  d.activate();
  for (const pod of pods) d.upsertPod(view(pod));
  await until('checked', () => d.podsOf('ml/default').every((p) => !p.unchecked));
  for (let n = 2; n <= 6; n++) d.setDesired('ml/default', version(n));
  await until('all at v6', () => d.podsOf('ml/default').every((p) => p.hash === 'sha256:v6'));
  for (const pod of pods)
    assert.deepEqual(
      pod.puts.map((p) => p.name + (p.spec as { hash: string }).hash),
      ['defaultsha256:v6'],
    );
});

test('a refused version leaves the pod where it was, says why, and is retried', async () => {
  const [pod] = await sidecars(1, 'sha256:v1');
  assert.ok(pod);
  pod.behaviour = 'nack';
  const d = distributor();
  d.activate();
  d.setDesired('ml/default', version(2));
  d.upsertPod(view(pod));
  await until('retried', () => pod.puts.length >= 2);
  const [state] = d.podsOf('ml/default');
  assert.equal(state?.hash, 'sha256:v1');
  assert.equal(state?.problem, 'refused: masking.rules: no');
  pod.behaviour = 'ack';
  await until('accepted', () => d.podsOf('ml/default')[0]?.hash === 'sha256:v2');
  assert.equal(d.podsOf('ml/default')[0]?.problem, undefined);
});

test('an unreachable pod is retried until it answers, and asked before it is pushed', async () => {
  const [pod] = await sidecars(1, 'sha256:v2');
  assert.ok(pod);
  await pod.stop();
  const d = distributor();
  d.activate();
  d.setDesired('ml/default', version(2));
  d.upsertPod(view(pod));
  await until('reported', () => d.podsOf('ml/default')[0]?.problem?.startsWith('unreachable') === true);
  assert.equal(d.podsOf('ml/default')[0]?.unchecked, false, 'a failed ask settles the pod for status');
  await pod.start();
  await until('reached', () => d.podsOf('ml/default')[0]?.problem === undefined);
  assert.equal(d.podsOf('ml/default')[0]?.hash, 'sha256:v2');
  assert.equal(pod.puts.length, 0, 'it already had the version');
});

test('a pod whose restarted sidecar cannot be asked no longer counts as enforcing its old version', async () => {
  const [pod] = await sidecars(1, 'sha256:v1');
  assert.ok(pod);
  const d = distributor();
  d.setDesired('ml/default', version(1));
  d.activate();
  d.upsertPod(view(pod));
  await until('in sync', () => d.podsOf('ml/default')[0]?.hash === 'sha256:v1');
  await pod.stop();
  d.upsertPod(view(pod, '1'));
  await until('reported', () => d.podsOf('ml/default')[0]?.problem?.startsWith('unreachable') === true);
  assert.equal(d.podsOf('ml/default')[0]?.hash, undefined);
  await pod.start();
  await until('reached', () => d.podsOf('ml/default')[0]?.problem === undefined);
  assert.equal(d.podsOf('ml/default')[0]?.hash, 'sha256:v1');
});

test('a push whose answer is lost is not repeated: the pod is asked first', async () => {
  const [pod] = await sidecars(1, 'sha256:v1');
  assert.ok(pod);
  pod.behaviour = 'lost';
  const d = distributor();
  d.activate();
  d.setDesired('ml/default', version(2));
  d.upsertPod(view(pod));
  await until('in sync', () => d.podsOf('ml/default')[0]?.hash === 'sha256:v2');
  assert.equal(pod.puts.length, 1);
  assert.ok(pod.gets >= 2);
});

test('losing leadership aborts a push under way and sends nothing more until won again', async () => {
  const [pod] = await sidecars(1, 'sha256:v1');
  assert.ok(pod);
  pod.behaviour = 'hang';
  const d = distributor();
  d.activate();
  d.setDesired('ml/default', version(2));
  d.upsertPod(view(pod));
  await until('push under way', () => pod.puts.length === 1);
  d.deactivate();
  pod.behaviour = 'ack';
  d.setDesired('ml/default', version(3));
  const extra = view(pod, '1');
  d.upsertPod(extra);
  // Longer than the debounce and several retries: a live distributor would have pushed by now.
  await sleep(300);
  assert.equal(pod.puts.length, 1);
  assert.equal(pod.gets, 1);
  assert.equal(d.podsOf('ml/default')[0]?.hash, 'sha256:v1');

  d.activate();
  await until('v3 after winning again', () => d.podsOf('ml/default')[0]?.hash === 'sha256:v3');
  assert.equal(pod.gets, 2, 'asked again first');
  assert.deepEqual(
    pod.puts.map((p) => (p.spec as { hash: string }).hash),
    ['sha256:v2', 'sha256:v3'],
  );
});

test('a removed pod is forgotten, and its policy told', async () => {
  const [pod] = await sidecars(1, 'sha256:v1');
  assert.ok(pod);
  const changes: string[] = [];
  const d = distributor(changes);
  d.activate();
  d.upsertPod(view(pod));
  await until('checked', () => d.podsOf('ml/default')[0]?.unchecked === false);
  changes.length = 0;
  d.removePod(pod.uid);
  assert.deepEqual(d.podsOf('ml/default'), []);
  assert.deepEqual(changes, ['ml/default']);
});

test('a deleted policy is revoked from its pods, with a token for that pod, that name and the version seen', async () => {
  const [pod] = await sidecars(1, 'sha256:v1');
  assert.ok(pod);
  const { d, policy } = await leadingOver(view(pod));
  policy.exists = false;
  d.deleted('ml/default');
  await until('revoked', () => pod.deletes.length === 1 && d.podsOf('ml/default')[0]?.hash === undefined);
  const claims = pod.deletes[0]?.claims;
  assert.ok(claims);
  assert.equal(claims.iss, 'veil-controller');
  assert.equal(claims.aud, `veil-sidecar:${pod.uid}`);
  assert.equal(claims.sub, 'controller-0');
  assert.deepEqual(
    claims.revoke,
    { name: 'default', hash: 'sha256:v1' },
    'bound to the version the pod enforced',
  );
  assert.equal(claims.policy, undefined, 'no push token');
  assert.equal(typeof claims.jti, 'string');
  assert.ok((claims.exp ?? 0) - (claims.iat ?? 0) <= 60, 'lives a minute at most');
  assert.equal(pod.hash, undefined);
  assert.equal(d.podsOf('ml/default')[0]?.problem, undefined);
  assert.deepEqual(pod.changes, ['DELETE default']);
});

test('a terminating pod, still serving while it drains, gets new versions and revocations but is left out of the status', async () => {
  const [staying, draining] = await sidecars(2, 'sha256:v1');
  assert.ok(staying && draining);
  const { d, policy } = await leadingOver(view(staying), view(draining, '0', true));
  assert.deepEqual(
    d.podsOf('ml/default').map((p) => p.uid),
    [staying.uid],
  );
  d.setDesired('ml/default', version(2));
  await until('pushed to both', () => staying.hash === 'sha256:v2' && draining.hash === 'sha256:v2');
  policy.exists = false;
  d.deleted('ml/default');
  await until('revoked from both', () => staying.deletes.length === 1 && draining.deletes.length === 1);
  assert.equal(draining.hash, undefined);
});

test('a policy deleted and re-created within the debounce is never revoked: the new version is pushed', async () => {
  const [pod] = await sidecars(1, 'sha256:v1');
  assert.ok(pod);
  const { d, policy } = await leadingOver(view(pod));
  policy.exists = false;
  d.deleted('ml/default');
  // A resync or a restarted sidecar inside the window waits for the debounce too.
  d.upsertPod(view(pod, '1'));
  policy.exists = true;
  d.setDesired('ml/default', version(2));
  await until('v2', () => d.podsOf('ml/default')[0]?.hash === 'sha256:v2');
  assert.deepEqual(pod.changes, ['PUT sha256:v2']);
  assert.equal(pod.deletes.length, 0);
});

test('a policy re-created after its revocation went out is pushed again, after it', async () => {
  const [pod] = await sidecars(1, 'sha256:v1');
  assert.ok(pod);
  const { d, policy } = await leadingOver(view(pod));
  // Its answer lost: the controller cannot tell the revocation landed until it asks.
  pod.behaviour = 'lost';
  policy.exists = false;
  d.deleted('ml/default');
  await until('revocation landed', () => pod.changes.length === 1);
  pod.behaviour = 'ack';
  policy.exists = true;
  d.setDesired('ml/default', version(1));
  await until('v1 again', () => pod.hash === 'sha256:v1' && d.podsOf('ml/default')[0]?.hash === 'sha256:v1');
  assert.deepEqual(pod.changes, ['DELETE default', 'PUT sha256:v1']);
});

test('a pod enforcing a policy that does not exist is revoked once this controller leads', async () => {
  const [pod] = await sidecars(1, 'sha256:v1');
  assert.ok(pod);
  const d = distributor([], () => false);
  d.upsertPod(view(pod));
  d.activate();
  await until('revoked', () => pod.changes.length === 1 && d.podsOf('ml/default')[0]?.hash === undefined);
  assert.deepEqual(pod.changes, ['DELETE default']);
});

test('a deletion found on winning leadership is debounced too: re-created within it, it is never revoked', async () => {
  const [pod] = await sidecars(1, 'sha256:v1');
  assert.ok(pod);
  let exists = false;
  // A debounce far longer than asking the pod takes: the re-creation lands inside it.
  const d = new Distributor({
    client,
    policyExists: () => exists,
    debounceMs: 500,
    maxDebounceMs: 1000,
    retry: { initialMs: 10, maxMs: 40 },
  });
  running.distributors.push(d);
  d.upsertPod(view(pod));
  d.activate();
  await until('asked', () => d.podsOf('ml/default')[0]?.unchecked === false);
  exists = true;
  d.setDesired('ml/default', version(1));
  await sleep(700);
  assert.equal(pod.deletes.length, 0);
  assert.deepEqual(pod.changes, []);
  assert.equal(d.podsOf('ml/default')[0]?.hash, 'sha256:v1');
});

test('whether the policy exists may take an API call: a "no" answered later still revokes', async () => {
  const [pod] = await sidecars(1, 'sha256:v1');
  assert.ok(pod);
  const asked = new Distributor({
    client,
    policyExists: async () => {
      await sleep(5);
      return false;
    },
    debounceMs: 20,
    retry: { initialMs: 10, maxMs: 40 },
  });
  running.distributors.push(asked);
  asked.upsertPod(view(pod));
  asked.activate();
  await until('revoked', () => pod.changes.length === 1);
  assert.deepEqual(pod.changes, ['DELETE default']);
});

test('a pod whose policy exists without a valid version keeps what it enforces', async () => {
  const [pod] = await sidecars(1, 'sha256:v1');
  assert.ok(pod);
  const d = distributor([], () => true);
  d.activate();
  d.upsertPod(view(pod));
  await until('checked', () => d.podsOf('ml/default')[0]?.unchecked === false);
  assert.equal(pod.deletes.length, 0);
  assert.equal(d.podsOf('ml/default')[0]?.hash, 'sha256:v1');
});

test('a refused revocation says why and is retried until taken', async () => {
  const [pod] = await sidecars(1, 'sha256:v1');
  assert.ok(pod);
  pod.behaviour = 'nack';
  const d = distributor([], () => false);
  d.activate();
  d.upsertPod(view(pod));
  // Each retry asks the pod first, which clears the problem until the next answer: wait for that answer.
  const refused = 'revocation refused: enforces default, not default';
  await until('retried', () => pod.deletes.length >= 2 && d.podsOf('ml/default')[0]?.problem === refused);
  assert.equal(d.podsOf('ml/default')[0]?.hash, 'sha256:v1');
  pod.behaviour = 'ack';
  await until('taken', () => d.podsOf('ml/default')[0]?.hash === undefined);
  assert.equal(d.podsOf('ml/default')[0]?.problem, undefined);
});
