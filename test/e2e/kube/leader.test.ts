// Two injector processes against one API server: only the holder of the
// `veil-controller` Lease pushes; killed, it is replaced by the other. Pushes
// are told apart at the sidecars by the `sub` of their tokens, the replica's
// identity. Pods are stand-ins (support/standins.ts).
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createConnection, createServer, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { CoordinationV1Api, KubeConfig } from '@kubernetes/client-node';
import { policyHash, policySpecSchema } from '@veil/core';
import { LeaderElector, silentLog } from '@veil/injector';
import { startDemoModel } from '@veil/sidecar';
import { type ControlPlane, freePort, startControlPlane } from '../../harness/index.ts';
import { applyPolicy, eventually, freshNamespace, installCrds, readPolicy } from './support/cluster.ts';
import {
  deleteWebhook,
  ensureInjectorNamespace,
  injectorFiles,
  injectorNamespace,
  registerWebhook,
  waitForWebhook,
} from './support/injector.ts';
import { type Replica, startReplica } from './support/replica.ts';
import { type StandIn, startStandIns, waitForHash } from './support/standins.ts';

// Short enough for a test, long enough that a loaded machine does not make the
// leader miss its renewals.
const lease = { durationSeconds: 4, renewSeconds: 1 };

let cp: ControlPlane;
let model: Awaited<ReturnType<typeof startDemoModel>>;
const replicas: Replica[] = [];
const standIns: StandIn[] = [];
let webhookName: string | undefined;

before(async () => {
  cp = await startControlPlane();
  await installCrds(cp);
  await ensureInjectorNamespace(cp);
  model = await startDemoModel();
});
after(async () => {
  await Promise.all(standIns.map((s) => s.close()));
  if (webhookName) await deleteWebhook(cp, webhookName).catch(() => undefined);
  await Promise.all(replicas.map((r) => r.process.stop()));
  await model?.close();
  await cp?.stop();
});

const spec = (maxInputs: number) => ({ limits: { maxInputsPerRequest: maxInputs } });
const hashOf = (value: unknown) => policyHash(policySpecSchema.parse(value));

async function holder(): Promise<string | undefined> {
  const found = await cp
    .kubeConfig()
    .makeApiClient(CoordinationV1Api)
    .readNamespacedLease({ namespace: injectorNamespace, name: 'veil-controller' });
  return found.spec?.holderIdentity || undefined;
}

const pushesBy = (pods: readonly StandIn[]) => {
  const counts: Record<string, number> = {};
  for (const pod of pods)
    for (const put of pod.puts()) counts[put.subject ?? '?'] = (counts[put.subject ?? '?'] ?? 0) + 1;
  return counts;
};

test('only the leader pushes; when it is killed the other replica takes over', async () => {
  const adminPort = await freePort();
  const files = await injectorFiles(cp, { adminPort });
  replicas.push(await startReplica(cp, files, 'replica-a', lease));
  replicas.push(await startReplica(cp, files, 'replica-b', lease));
  const leader = await eventually('a leader', holder);
  const [first, second] = leader === 'replica-a' ? replicas : [...replicas].reverse();
  assert.ok(first && second);
  console.log(`leader: ${first.identity}`);

  webhookName = await registerWebhook(cp, second.webhookUrl);
  const namespace = await freshNamespace(cp, 'leader');
  await waitForWebhook(cp, namespace);
  await applyPolicy(cp, namespace, 'default', spec(100));
  const pods = await startStandIns({
    cp,
    namespace,
    count: 4,
    adminPort,
    modelUrl: model.url,
    controller: { url: second.pullUrl, caFile: cp.caCert },
  });
  standIns.push(...pods);
  await waitForHash(pods, hashOf(spec(100)));

  await applyPolicy(cp, namespace, 'default', spec(200));
  await waitForHash(pods, hashOf(spec(200)));
  // Only the leader pushes; how many depends on whether the webhook replica had
  // the first version cached when the pods were admitted (a bootstrap policy).
  assert.deepEqual(Object.keys(pushesBy(pods)), [first.identity]);
  assert.equal(await holder(), first.identity);

  // Killed outright: no chance to hand the Lease back; the other waits it out.
  first.process.child.kill('SIGKILL');
  await first.process.exited;
  const killedAt = performance.now();
  const next = await eventually('the other replica leading', async () => {
    const now = await holder();
    return now === second.identity ? now : undefined;
  });
  console.log(
    `takeover: ${second.identity} holds the Lease ${(performance.now() - killedAt).toFixed(0)} ms after the kill`,
  );
  assert.equal(next, second.identity);

  await applyPolicy(cp, namespace, 'default', spec(300));
  await waitForHash(pods, hashOf(spec(300)));
  assert.deepEqual(pushesBy(pods), { [first.identity]: 4, [second.identity]: 4 });
  await eventually('status from the new leader', async () => {
    const policy = await readPolicy(cp, namespace, 'default');
    return policy.status?.contentHash === hashOf(spec(300)) && policy.status.sync === '4/4'
      ? true
      : undefined;
  });

  // A graceful stop hands the Lease back at once.
  await second.process.stop('SIGTERM');
  assert.equal(second.process.child.exitCode, 0);
  assert.equal(await holder(), undefined);
  const stopped = (await second.log()).map((line) => line.message);
  assert.ok(stopped.includes('stopping'));
});

/** A TCP pass-through to the API server that can be cut, as a network partition would. */
async function cuttableRoute(target: URL): Promise<{ url: string; cut(): void }> {
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = createConnection({ host: target.hostname, port: Number(target.port) });
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => socket.destroy());
    }
    client.pipe(upstream).pipe(client);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  return {
    url: `https://127.0.0.1:${port}`,
    cut() {
      server.close();
      for (const socket of sockets) socket.destroy();
    },
  };
}

test('a leader cut off from the API server steps down before another can take over', async () => {
  const route = await cuttableRoute(new URL(cp.server));
  const direct = cp.kubeConfig();
  const cutOff = new KubeConfig();
  cutOff.loadFromOptions({
    clusters: direct.clusters.map((cluster) => ({ ...cluster, server: route.url })),
    users: direct.users,
    contexts: direct.contexts,
    currentContext: direct.currentContext,
  });
  const events: string[] = [];
  const elector = (identity: string, kubeConfig: KubeConfig) =>
    new LeaderElector({
      api: kubeConfig.makeApiClient(CoordinationV1Api),
      namespace: injectorNamespace,
      name: 'partition',
      identity,
      // Generous for a loaded machine: a slow renew must not look like a partition.
      leaseDurationSeconds: 4,
      renewIntervalMs: 1000,
      onStartedLeading: () => events.push(`${identity} leads`),
      onStoppedLeading: () => events.push(`${identity} stops`),
      log: silentLog,
    });
  const a = elector('a', cutOff);
  const b = elector('b', direct);
  try {
    a.start();
    await eventually('a leading', async () => (a.isLeader() ? true : undefined));
    b.start();
    // b looks at least once while a renews, and stays a candidate.
    await eventually('a renewing', async () => {
      const found = await cp
        .kubeConfig()
        .makeApiClient(CoordinationV1Api)
        .readNamespacedLease({ namespace: injectorNamespace, name: 'partition' });
      return (found.spec?.leaseTransitions ?? 0) === 0 && found.spec?.holderIdentity === 'a'
        ? true
        : undefined;
    });
    assert.equal(b.isLeader(), false);

    route.cut();
    const cutAt = performance.now();
    await eventually('b leading', async () => (b.isLeader() ? true : undefined));
    console.log(`partition: b leads ${(performance.now() - cutAt).toFixed(0)} ms after a was cut off`);
    // a gave up before b could have begun: never two leaders at once.
    const bLeads = events.indexOf('b leads');
    assert.equal(events.lastIndexOf('b leads'), bLeads, events.join(', '));
    assert.ok(bLeads > events.lastIndexOf('a stops'), events.join(', '));
    assert.ok(events.lastIndexOf('a stops') > events.lastIndexOf('a leads'), events.join(', '));
  } finally {
    await a.stop({ release: false });
    await b.stop();
    route.cut();
  }
});
