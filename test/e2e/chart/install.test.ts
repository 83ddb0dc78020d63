// The chart installed for real into a kube-apiserver (no kubelet: pods are
// stored, never run), with the real injector running against it as the chart's
// own ServiceAccount. What is shown: the signing-key hook works with its own
// narrow RBAC; the injector works with the chart's RBAC and nothing more, and in
// the chart's self-managed certificate mode creates its Secret and patches the
// caBundle of both webhook configurations; the webhook selectors send exactly
// the opted-in pods to it; and an opted-in pod is refused while no injector
// answers, while every other pod is not affected.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { KubeConfig } from '@kubernetes/client-node';
import {
  controllerKeyFromJwk,
  type InjectorConfig,
  parseInjectorConfig,
  type RunningInjector,
  silentLog,
  startInjector,
  veilAnnotations,
  veilLabels,
} from '@veil/injector';
import { type ControlPlane, infraBinary, startControlPlane } from '../../harness/index.ts';
import { chartDir, type Manifest, one, type Rendered, render, repoRoot } from './support.ts';

const run = promisify(execFile);

const release = 'veil-install';
const ns = { ml: 'ml', labelled: 'labelled', quiet: 'quiet' };

let cp: ControlPlane;
let rendered: Rendered;
let injector: RunningInjector | undefined;

before(async () => {
  cp = await startControlPlane();
  await kubectl('apply', '--server-side', '-f', join(chartDir, 'crds'));
  await kubectl('wait', '--for=condition=Established', '--timeout=60s', 'crd/embeddingpolicies.veil.dev');
  for (const name of [release, ...Object.values(ns)]) await kubectl('create', 'namespace', name);
  await kubectl('label', 'namespace', ns.labelled, `${veilLabels.namespaceInjection}=enabled`);
  rendered = await render(cp.dir, { workloadNamespaces: Object.values(ns) }, { release, namespace: release });
  // Everything the chart renders, hooks included, applied for real. Nothing runs
  // here, so the injector below plays the Deployment's part.
  await kubectl('apply', '-f', rendered.file);
});
after(async () => {
  await injector?.close().catch(() => undefined);
  await cp?.stop();
});

function kubectl(...args: string[]) {
  return run(infraBinary('kubectl'), ['--kubeconfig', cp.kubeconfig, ...args], {
    maxBuffer: 16 * 1024 * 1024,
  });
}

async function json(...args: string[]): Promise<Manifest> {
  return JSON.parse((await kubectl(...args, '-o', 'json')).stdout) as Manifest;
}

/** A kubeconfig that authenticates as a ServiceAccount with a token the API server issues. */
async function serviceAccountKubeconfig(namespace: string, name: string): Promise<string> {
  const token = (await kubectl('create', 'token', name, '-n', namespace, '--duration', '1h')).stdout.trim();
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      {
        name: 'test',
        cluster: {
          server: cp.server,
          'certificate-authority-data': (await readFile(cp.caCert)).toString('base64'),
        },
      },
    ],
    users: [{ name, user: { token } }],
    contexts: [{ name: 'test', context: { cluster: 'test', user: name } }],
    'current-context': 'test',
  };
  const file = join(cp.dir, `${namespace}-${name}.kubeconfig`);
  await writeFile(file, JSON.stringify(config), { mode: 0o600 });
  return file;
}

async function canI(verb: string, resource: string, namespace: string, as: string): Promise<boolean> {
  // `<resource>/status` is the status subresource here, not an object named "status".
  const [what, subresource] = resource.endsWith('/status') ? [resource.slice(0, -7), 'status'] : [resource];
  const extra = subresource ? [`--subresource=${subresource}`] : [];
  try {
    await kubectl('auth', 'can-i', verb, what as string, ...extra, '-n', namespace, `--as=${as}`);
    return true;
  } catch (error) {
    if ((error as { stdout?: string }).stdout?.trim() === 'no') return false;
    throw error;
  }
}

type PodSpec = {
  name: string;
  namespace: string;
  annotations?: Record<string, string>;
  labels?: Record<string, string>;
};

function podBody({ name, namespace, annotations, labels }: PodSpec): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, annotations: annotations ?? {}, labels: labels ?? {} },
    spec: {
      // What a cluster's ServiceAccount admission sets (disabled here, where no
      // controller creates the default ServiceAccount); the injected sidecar's
      // projected controller token needs it.
      serviceAccountName: 'default',
      containers: [
        {
          name: 'model',
          image: 'example.invalid/embedder:1',
          ports: [{ name: 'http', containerPort: 8080 }],
        },
      ],
    },
  });
}

/** Creates the pod; resolves to what the API server stored, or rejects with its refusal. */
async function createPod(pod: PodSpec): Promise<Manifest> {
  const file = join(cp.dir, `pod-${pod.namespace}-${pod.name}.json`);
  await writeFile(file, podBody(pod));
  return JSON.parse((await kubectl('create', '-f', file, '-o', 'json')).stdout) as Manifest;
}

/** Binds the pod in ns.ml to node-1 through the bindings resource, as kubectl creates one. */
async function createBinding(pod: string, annotations: Record<string, string>): Promise<void> {
  const file = join(cp.dir, `binding-${pod}.json`);
  const binding = {
    apiVersion: 'v1',
    kind: 'Binding',
    metadata: { name: pod, namespace: ns.ml, annotations },
    target: { apiVersion: 'v1', kind: 'Node', name: 'node-1' },
  };
  await writeFile(file, JSON.stringify(binding));
  await kubectl('create', '-f', file);
}

function injected(pod: Manifest): boolean {
  const sidecar = (pod.spec.initContainers ?? []).some((c: { name: string }) => c.name === 'veil-proxy');
  return sidecar && pod.metadata.labels?.[veilLabels.injected] === 'true';
}

test('with the chart in place and no injector running, opted-in pods are refused and others admitted', async () => {
  // The API server loads a new webhook configuration on its own time.
  let probe = 0;
  await eventually('opted-in pods are refused', async () => {
    try {
      await createPod({
        name: `early-${++probe}`,
        namespace: ns.ml,
        annotations: { [veilAnnotations.inject]: 'true' },
      });
      return false;
    } catch (error) {
      return /inject\.pods\.veil\.dev/.test((error as Error).message);
    }
  });
  await assert.rejects(createPod({ name: 'early', namespace: ns.labelled }), /namespace\.pods\.veil\.dev/);
  // Not opted in: the API server never calls Veil.
  assert.equal(injected(await createPod({ name: 'plain-early', namespace: ns.ml })), false);
  assert.equal(
    injected(
      await createPod({
        name: 'opted-out-early',
        namespace: ns.labelled,
        annotations: { [veilAnnotations.inject]: 'false' },
      }),
    ),
    false,
  );
});

test('the signing-key hook creates the key with its own RBAC, and keeps it when run again', async () => {
  const job = one(rendered.objects, 'Job');
  const container = job.spec.template.spec.containers[0];
  const env = Object.fromEntries(
    container.env.map((e: { name: string; value: string }) => [e.name, e.value]),
  );
  const kubeconfig = await serviceAccountKubeconfig(release, job.spec.template.spec.serviceAccountName);
  // As the image runs it: node with the script from the chart, in the working directory of the sources.
  const hook = () =>
    run(process.execPath, ['--input-type=module', '-e', container.args[0]], {
      cwd: repoRoot,
      env: { ...process.env, ...env, KUBECONFIG: kubeconfig },
    });
  const first = await hook();
  assert.match(first.stdout, /created the controller signing key/);
  const secret = await json('get', 'secret', env.VEIL_SECRET_NAME, '-n', release);
  const jwk = JSON.parse(Buffer.from(secret.data[env.VEIL_SECRET_KEY], 'base64').toString('utf8'));
  const key = await controllerKeyFromJwk(jwk);
  const second = await hook();
  assert.match(second.stdout, new RegExp(`kept the controller signing key ${key.kid}`));
  const again = await json('get', 'secret', env.VEIL_SECRET_NAME, '-n', release);
  assert.deepEqual(again.data, secret.data);
});

/**
 * The real injector with the Deployment's environment, as the chart's
 * ServiceAccount; `overrides` stand in for what differs outside a cluster.
 */
async function startChartInjector(overrides: Record<string, string>): Promise<{
  running: RunningInjector;
  config: InjectorConfig;
}> {
  const deployment = one(rendered.objects, 'Deployment');
  const pod = deployment.spec.template.spec;
  const env: Record<string, string> = {};
  for (const variable of pod.containers[0].env)
    if (variable.value !== undefined) env[variable.name] = variable.value;

  const settingsFile = join(cp.dir, 'settings.json');
  await writeFile(
    settingsFile,
    one(rendered.objects, 'ConfigMap', 'veil-install-injector-settings').data['settings.json'],
  );
  const signingSecret = await json('get', 'secret', 'veil-install-controller-signing-key', '-n', release);
  await writeFile(signingKeyFile(), Buffer.from(signingSecret.data['jwk.json'], 'base64'));

  const config = parseInjectorConfig([], {
    ...env,
    VEIL_SETTINGS_FILE: settingsFile,
    VEIL_SIGNING_KEY_FILE: signingKeyFile(),
    VEIL_HOST: '127.0.0.1',
    VEIL_WEBHOOK_PORT: '0',
    VEIL_PULL_PORT: '0',
    VEIL_APPROVALS_PORT: '0',
    VEIL_POD_NAME: 'veil-injector-test-0',
    VEIL_LEASE_RENEW_SECONDS: '1',
    VEIL_LEASE_DURATION_SECONDS: '4',
    ...overrides,
  });
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromFile(await serviceAccountKubeconfig(release, pod.serviceAccountName));
  return { running: await startInjector(config, { kubeConfig, log: silentLog }), config };
}

function signingKeyFile(): string {
  return join(cp.dir, 'signing-key.json');
}

test('the injector runs with the chart RBAC in self-managed mode: it keeps the certificate Secret, patches the caBundle, leads, publishes its key, writes policy status and answers pulls', async () => {
  // The chart's certificate settings as they are; only the files move, to a
  // directory standing in for the Deployment's emptyDir.
  const tlsDir = join(cp.dir, 'tls-emptydir');
  await mkdir(tlsDir, { recursive: true });
  const started = await startChartInjector({
    VEIL_TLS_CERT_FILE: join(tlsDir, 'tls.crt'),
    VEIL_TLS_KEY_FILE: join(tlsDir, 'tls.key'),
  });
  injector = started.running;
  const { config } = started;
  assert.equal(config.certsMode, 'self-managed');

  // The leader created the Secret the chart's Role names, with the CA and the serving pair.
  const secret = await json('get', 'secret', 'veil-install-webhook-tls', '-n', release);
  const data = Object.fromEntries(
    Object.entries(secret.data as Record<string, string>).map(([k, v]) => [
      k,
      Buffer.from(v, 'base64').toString('utf8'),
    ]),
  );
  assert.deepEqual(Object.keys(data).sort(), ['ca.crt', 'ca.key', 'tls.crt', 'tls.key']);
  assert.equal(secret.metadata.labels?.['app.kubernetes.io/managed-by'], 'veil-controller');
  const ca = new X509Certificate(data['ca.crt'] as string);
  const serving = new X509Certificate(data['tls.crt'] as string);
  assert.ok(serving.checkIssued(ca) && serving.verify(ca.publicKey), 'the CA signed the serving certificate');
  const host = `veil-install-injector.${release}.svc`;
  for (const name of [host, `${host}.cluster.local`]) assert.equal(serving.checkHost(name), name);
  // This replica serves the Secret's pair, from the files it wrote.
  assert.equal(await readFile(config.tlsCertFile, 'utf8'), data['tls.crt']);
  assert.equal(await readFile(config.tlsKeyFile, 'utf8'), data['tls.key']);

  // Every webhook of both configurations trusts that CA (the chart left caBundle out).
  await eventually('the caBundle is patched into every webhook', async () => {
    for (const name of [release, `${release}-approvals`]) {
      const configuration = await json('get', 'mutatingwebhookconfiguration', name);
      for (const webhook of configuration.webhooks) {
        const bundle = Buffer.from(webhook.clientConfig.caBundle ?? '', 'base64').toString('utf8');
        if (!bundle.includes((data['ca.crt'] as string).trim())) return false;
        assert.equal(webhook.failurePolicy, 'Fail');
      }
    }
    return true;
  });

  // Leader election through the Lease its Role names.
  await eventually('the Lease is held', async () => {
    const lease = await json('get', 'lease', config.leaseName, '-n', release);
    return lease.spec.holderIdentity === 'veil-injector-test-0';
  });
  const running = injector;
  // The public key, where sidecars mount it.
  await eventually('the public key ConfigMap is published', async () => {
    const configMap = await json('get', 'configmap', 'veil-controller-key', '-n', ns.quiet);
    return (
      JSON.parse(configMap.data['jwk.json']).kid ===
      (await controllerKeyFromJwk(JSON.parse(await readFile(signingKeyFile(), 'utf8')))).kid
    );
  });
  // Status of the chart's default policy in a namespace without pods.
  await eventually('the default policy reports Ready', async () => {
    const policy = await json('get', 'embeddingpolicy', 'default', '-n', ns.quiet);
    const ready = policy.status?.conditions?.find((c: { type: string }) => c.type === 'Ready');
    return ready?.status === 'True' && policy.status.observedGeneration === policy.metadata.generation;
  });
  // A pull, authenticated by a TokenReview: a pod's service account reads its own namespace's policy only.
  await kubectl('create', 'serviceaccount', 'caller', '-n', ns.ml);
  const token = (
    await kubectl('create', 'token', 'caller', '-n', ns.ml, '--audience', 'veil-controller')
  ).stdout.trim();
  // Over TLS with the Secret's CA, as the Service's name: the certificate the API server and sidecars see.
  const { Agent, request } = await import('undici');
  const dispatcher = new Agent({ connect: { ca: data['ca.crt'], servername: host } });
  try {
    const own = await request(`${running.pull.url}/v1/policies/${ns.ml}/default`, {
      headers: { authorization: `Bearer ${token}` },
      dispatcher,
    });
    const body = (await own.body.json()) as { name?: string; spec?: unknown };
    assert.equal(own.statusCode, 200);
    assert.equal(body.name, 'default');
    const other = await request(`${running.pull.url}/v1/policies/${ns.quiet}/default`, {
      headers: { authorization: `Bearer ${token}` },
      dispatcher,
    });
    await other.body.dump();
    assert.equal(other.statusCode, 403);
  } finally {
    await dispatcher.close();
  }
  // The webhook tests below call the injector at 127.0.0.1, which a certificate
  // for the Service cannot name: this replica steps down (and stops patching).
  await running.close();
  injector = undefined;
});

test('the chart RBAC grants the injector nothing beyond what it uses', async () => {
  const as = `system:serviceaccount:${release}:veil-install-injector`;
  const expected: [string, string, string, boolean][] = [
    ['get', 'namespaces', ns.ml, true],
    ['get', 'pods', ns.ml, true],
    ['watch', 'pods', ns.ml, true],
    ['patch', 'embeddingpolicies.veil.dev/default', ns.ml, false],
    ['patch', 'embeddingpolicies.veil.dev/status', ns.ml, true],
    ['update', 'embeddingpolicies.veil.dev/status', ns.ml, false],
    ['update', 'configmaps/veil-controller-key', ns.ml, true],
    ['update', 'configmaps/other', ns.ml, false],
    ['get', 'secrets', release, false],
    ['get', 'secrets/veil-install-webhook-tls', release, true],
    ['update', 'secrets/veil-install-webhook-tls', release, true],
    ['update', 'secrets/other', release, false],
    ['delete', 'secrets/veil-install-webhook-tls', release, false],
    ['create', 'secrets', release, true],
    ['create', 'secrets', ns.ml, false],
    ['get', 'mutatingwebhookconfigurations/veil-install', release, true],
    ['patch', 'mutatingwebhookconfigurations/veil-install', release, true],
    ['patch', 'mutatingwebhookconfigurations/veil-install-approvals', release, true],
    ['patch', 'mutatingwebhookconfigurations/someone-else', release, false],
    ['list', 'mutatingwebhookconfigurations', release, false],
    ['list', 'secrets', ns.ml, false],
    ['create', 'pods', ns.ml, false],
    ['delete', 'pods', ns.ml, false],
    ['delete', 'embeddingpolicies.veil.dev', ns.ml, false],
    ['update', 'leases/veil-install-controller', release, true],
    ['update', 'leases/someone-else', release, false],
    ['update', 'mutatingwebhookconfigurations', release, false],
    ['create', 'embeddingapprovals.veil.dev', ns.ml, true],
    ['list', 'embeddingapprovals.veil.dev', ns.quiet, true],
    ['patch', 'embeddingapprovals.veil.dev/status', ns.ml, true],
    ['patch', 'embeddingapprovals.veil.dev', ns.ml, false],
    ['delete', 'embeddingapprovals.veil.dev', ns.quiet, true],
  ];
  for (const [verb, resource, namespace, allowed] of expected) {
    assert.equal(await canI(verb, resource, namespace, as), allowed, `${verb} ${resource} in ${namespace}`);
  }
});

test('the webhook configuration sends exactly the opted-in pods to the injector', async () => {
  // The API server calls the webhook at 127.0.0.1 here, so the serving
  // certificate is for that address, served as mounted files.
  const tls = await cp.issueServingCert('veil-injector');
  injector = (
    await startChartInjector({
      VEIL_CERTS_MODE: 'files',
      VEIL_TLS_CERT_FILE: tls.cert,
      VEIL_TLS_KEY_FILE: tls.key,
    })
  ).running;
  // The one change to the rendered configuration: the API server here has no
  // route to a Service, so each webhook calls the injector's address directly.
  const caBundle = (await readFile(cp.caCert)).toString('base64');
  const webhooks = one(rendered.objects, 'MutatingWebhookConfiguration', release).webhooks as unknown[];
  const patch = webhooks.map((_, index) => ({
    op: 'replace',
    path: `/webhooks/${index}/clientConfig`,
    value: { url: `${injector?.webhook.url}/mutate-pods`, caBundle },
  }));
  await kubectl('patch', 'mutatingwebhookconfiguration', release, '--type=json', '-p', JSON.stringify(patch));

  const annotated = (value: string) => ({ [veilAnnotations.inject]: value });
  // The API server takes a moment to use the new configuration.
  let probe = 0;
  await eventually('the API server calls the injector', async () => {
    try {
      return injected(
        await createPod({ name: `probe-${++probe}`, namespace: ns.ml, annotations: annotated('true') }),
      );
    } catch {
      return false;
    }
  });

  const byAnnotation = await createPod({
    name: 'annotated',
    namespace: ns.ml,
    annotations: annotated('true'),
  });
  assert.ok(injected(byAnnotation));
  assert.ok(
    byAnnotation.metadata.annotations?.[veilAnnotations.bootstrapPolicy],
    'the bootstrap policy is written',
  );
  assert.ok(injected(await createPod({ name: 'by-namespace', namespace: ns.labelled })));
  assert.equal(
    injected(await createPod({ name: 'opted-out', namespace: ns.labelled, annotations: annotated('false') })),
    false,
  );
  assert.equal(injected(await createPod({ name: 'plain', namespace: ns.ml })), false);
  assert.equal(
    injected(await createPod({ name: 'own-namespace', namespace: release, annotations: annotated('true') })),
    false,
  );
  // A misspelt opt-in reaches the injector, which refuses it rather than skip the audit.
  await assert.rejects(
    createPod({ name: 'typo', namespace: ns.ml, annotations: annotated('yes') }),
    /veil\.dev\/inject: must be "true" or "false"/,
  );
  // Updates of an injected pod go through the guard, and so do writes of its
  // status, which store the metadata they carry.
  await assert.rejects(
    kubectl('label', 'pod', 'annotated', '-n', ns.ml, `${veilLabels.injected}-`),
    /cannot be removed from an injected pod/,
  );
  const unlabel = [{ op: 'remove', path: `/metadata/labels/${veilLabels.injected.replace('/', '~1')}` }];
  await assert.rejects(
    kubectl(
      'patch',
      'pod',
      'annotated',
      '-n',
      ns.ml,
      '--subresource=status',
      '--type=json',
      '-p',
      JSON.stringify(unlabel),
    ),
    /cannot be removed from an injected pod/,
  );
  await kubectl('label', 'pod', 'plain', '-n', ns.ml, 'team=search');
  // The label is the injector's alone: neither added later nor brought along by a
  // pod that does not opt in.
  await assert.rejects(
    kubectl('label', 'pod', 'plain', '-n', ns.ml, `${veilLabels.injected}=true`),
    /cannot be added to a pod it did not inject/,
  );
  await assert.rejects(
    createPod({ name: 'labelled', namespace: ns.ml, labels: { [veilLabels.injected]: 'true' } }),
    /labelled veil\.dev\/injected=true but has no Veil sidecar/,
  );
  // The sidecar is out of reach of exec and of debug containers, and Veil's marks
  // of bindings; the model is not. No kubelet here: what admission lets through
  // fails next for want of a node.
  await assert.rejects(
    kubectl('exec', 'annotated', '-n', ns.ml, '-c', 'veil-proxy', '--', 'node'),
    /exec\.pods\.veil\.dev.*pods\/exec into container veil-proxy is refused/,
  );
  await assert.rejects(
    kubectl('exec', 'annotated', '-n', ns.ml, '-c', 'model', '--', 'sh'),
    /does not have a host assigned/,
  );
  await assert.rejects(
    kubectl('debug', 'annotated', '-n', ns.ml, '--image=busybox', '--target=veil-proxy'),
    /targets veil-proxy, the Veil sidecar/,
  );
  await kubectl('debug', 'annotated', '-n', ns.ml, '--image=busybox', '--target=model');
  await assert.rejects(
    createBinding('annotated', { [veilAnnotations.bootstrapPolicy]: '{"name":"lenient","spec":{}}' }),
    /binding\.pods\.veil\.dev.*veil\.dev\/bootstrap-policy is set by the Veil injector/,
  );

  // Approval decisions go through the chart's approvals webhook and are stamped
  // with the API server's record of who sent them.
  const approvalsPatch = [
    {
      op: 'replace',
      path: '/webhooks/0/clientConfig',
      value: { url: `${injector?.webhook.url}/mutate-approvals`, caBundle },
    },
  ];
  await kubectl(
    'patch',
    'mutatingwebhookconfiguration',
    `${release}-approvals`,
    '--type=json',
    '-p',
    JSON.stringify(approvalsPatch),
  );
  await decideAsApprover();

  // Without the injector, opted-in pods are refused again and the rest still admitted.
  await injector?.close();
  injector = undefined;
  await eventually('opted-in pods are refused', async () => {
    try {
      await createPod({ name: `after-${++probe}`, namespace: ns.ml, annotations: annotated('true') });
      return false;
    } catch (error) {
      return /failed calling webhook "inject\.pods\.veil\.dev"/.test(
        (error as { stderr?: string }).stderr ?? '',
      );
    }
  });
  assert.equal(injected(await createPod({ name: 'plain-after', namespace: ns.ml })), false);
  // Neither an exec into the model nor the scheduler's bindings wait on the injector.
  await assert.rejects(
    kubectl('exec', 'annotated', '-n', ns.ml, '-c', 'model', '--', 'sh'),
    /does not have a host assigned/,
  );
  await assert.rejects(
    kubectl('exec', 'annotated', '-n', ns.ml, '-c', 'veil-proxy', '--', 'node'),
    /failed calling webhook "exec\.pods\.veil\.dev"/,
  );
  await createBinding('annotated', { 'scheduler.example.com/score': '7' });
  assert.equal((await json('get', 'pod', 'annotated', '-n', ns.ml)).spec.nodeName, 'node-1');
  // The status of injected pods is still written (the kubelet's routine), as it
  // leaves their metadata alone.
  const ready = { status: { conditions: [{ type: 'Ready', status: 'True' }] } };
  await kubectl(
    'patch',
    'pod',
    'annotated',
    '-n',
    ns.ml,
    '--subresource=status',
    '--type=merge',
    '-p',
    JSON.stringify(ready),
  );
});

/** An approval held for alice; bob, an approver, decides and claims to be someone else. */
async function decideAsApprover(): Promise<void> {
  const approval = {
    apiVersion: 'veil.dev/v1alpha1',
    kind: 'EmbeddingApproval',
    metadata: { name: 'bulk-1', namespace: ns.ml },
    spec: {
      requester: { issuer: 'https://login.example.com', subject: 'alice', groups: ['ml-writers'] },
      policy: 'default',
      rule: 'bulk-reindex',
      pod: { namespace: ns.ml, name: 'annotated' },
      request: {
        api: 'openai',
        model: 'demo',
        inputCount: 300,
        bytes: 4096,
        digest: `sha256:${'0'.repeat(64)}`,
      },
      approvers: { groups: ['ml-approvers'], count: 1 },
      expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
      singleUse: true,
    },
  };
  const file = join(cp.dir, 'approval.json');
  await writeFile(file, JSON.stringify(approval));
  // Only the controller opens approvals: created as anyone else, the webhook refuses it.
  await assert.rejects(kubectl('create', '-f', file), /opened by the Veil controller only/);
  const controller = await serviceAccountKubeconfig(release, `${release}-injector`);
  await run(infraBinary('kubectl'), ['--kubeconfig', controller, 'create', '-f', file]);
  const rbac = join(cp.dir, 'approver-rbac.json');
  await writeFile(
    rbac,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'List',
      items: [
        {
          apiVersion: 'rbac.authorization.k8s.io/v1',
          kind: 'Role',
          metadata: { name: 'approver', namespace: ns.ml },
          rules: [
            { apiGroups: ['veil.dev'], resources: ['embeddingapprovals'], verbs: ['get'] },
            { apiGroups: ['veil.dev'], resources: ['embeddingapprovals/status'], verbs: ['get', 'patch'] },
          ],
        },
        {
          apiVersion: 'rbac.authorization.k8s.io/v1',
          kind: 'RoleBinding',
          metadata: { name: 'approver', namespace: ns.ml },
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'approver' },
          subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'ml-approvers' }],
        },
      ],
    }),
  );
  await kubectl('apply', '-f', rbac);
  const bob = await cp.addUser('bob', ['ml-approvers']);
  const decision = {
    status: { decisions: [{ decision: 'approve', reason: 'planned re-index', approver: 'mallory' }] },
  };
  let stored: Manifest | undefined;
  await eventually('the decision is stamped', async () => {
    await run(infraBinary('kubectl'), [
      '--kubeconfig',
      bob.kubeconfig,
      'patch',
      'embeddingapproval',
      'bulk-1',
      '-n',
      ns.ml,
      '--subresource=status',
      '--type=merge',
      '-p',
      JSON.stringify(decision),
    ]);
    stored = await json('get', 'embeddingapproval', 'bulk-1', '-n', ns.ml);
    return stored.status?.decisions?.[0]?.approver === 'bob';
  });
  assert.equal(stored?.status.phase, 'Approved');
  assert.deepEqual(stored?.status.decisions[0].groups.includes('ml-approvers'), true);
}

async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (error) {
      last = error;
    }
    await sleep(250);
  }
  throw new Error(`timed out waiting until ${what}${last ? `: ${(last as Error).message}` : ''}`);
}
