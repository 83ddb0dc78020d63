// The quickstart's files (README, "Install on Kubernetes") agree with each other
// and with the code, and a real kube-apiserver accepts them: MinIO, the chart
// with the kind values, and the sample embedding Deployment, which the injector
// injects as it stands.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { policySpecSchema } from '@veil/core';
import { generateControllerJwk, inject, injectionSettingsSchema, veilAnnotations } from '@veil/injector';
import { parse } from 'yaml';
import { type ControlPlane, infraBinary, startControlPlane } from '../../harness/index.ts';
import { all, chartDir, type Manifest, one, parseManifests, render, repoRoot } from './support.ts';

const run = promisify(execFile);
let cp: ControlPlane;

before(async () => {
  cp = await startControlPlane();
  await kubectl('apply', '--server-side', '-f', join(chartDir, 'crds'));
  await kubectl('wait', '--for=condition=Established', '--timeout=60s', 'crd/embeddingpolicies.veil.dev');
  // The quickstart's namespaces, created for real: a dry-run creates nothing, so
  // the objects inside them could not be checked otherwise.
  for (const name of ['minio', 'ml', 'veil-system']) await kubectl('create', 'namespace', name);
});
after(async () => {
  await cp?.stop();
});

function kubectl(...args: string[]) {
  return run(infraBinary('kubectl'), ['--kubeconfig', cp.kubeconfig, ...args], {
    maxBuffer: 16 * 1024 * 1024,
  });
}

async function manifests(file: string): Promise<Manifest[]> {
  return parseManifests(await readFile(join(repoRoot, file), 'utf8'));
}

async function readmeSection(): Promise<string> {
  const readme = await readFile(join(repoRoot, 'README.md'), 'utf8');
  const start = readme.indexOf('## Install on Kubernetes');
  assert.ok(start >= 0, 'README has the section');
  const end = readme.indexOf('\n## ', start + 1);
  return readme.slice(start, end < 0 ? undefined : end);
}

test('the quickstart manifests and the chart with the kind values pass a server-side dry-run', async () => {
  for (const file of ['examples/minio.yaml', 'examples/embedding-deployment.yaml']) {
    const { stdout } = await kubectl('apply', '--dry-run=server', '-f', join(repoRoot, file));
    assert.equal(stdout.trim().split('\n').length, (await manifests(file)).length, stdout);
  }
  const values = parse(await readFile(join(repoRoot, 'examples/values-kind.yaml'), 'utf8'));
  const rendered = await render(cp.dir, values, { namespace: 'veil-system' });
  const { stdout } = await kubectl('apply', '--dry-run=server', '-f', rendered.file);
  assert.equal(stdout.trim().split('\n').length, rendered.objects.length, stdout);
});

test('the sample Deployment is injected as it stands, and its Service reaches the proxy', async () => {
  const values = parse(await readFile(join(repoRoot, 'examples/values-kind.yaml'), 'utf8'));
  const rendered = await render(cp.dir, values, { namespace: 'veil-system' });
  const settingsMap = one(rendered.objects, 'ConfigMap', 'veil-injector-settings');
  const settings = injectionSettingsSchema.parse(JSON.parse(settingsMap.data['settings.json']));
  const objects = await manifests('examples/embedding-deployment.yaml');
  const deployment = one(objects, 'Deployment');
  const service = one(objects, 'Service');
  const policy = one(rendered.objects, 'EmbeddingPolicy');
  assert.equal(policy.metadata.namespace, deployment.metadata.namespace);
  assert.equal(deployment.spec.template.metadata.annotations[veilAnnotations.policy], policy.metadata.name);

  const { d: _private, ...publicJwk } = await generateControllerJwk();
  const result = inject({
    pod: {
      metadata: { ...deployment.spec.template.metadata, namespace: 'ml' },
      spec: deployment.spec.template.spec,
    },
    namespace: 'ml',
    namespaceOptIn: false,
    settings,
    bootstrapPolicy: { name: policy.metadata.name, spec: policy.spec },
    trust: { publicJwk, caBundle: undefined },
  });
  assert.equal(result.outcome, 'injected', JSON.stringify(result));
  if (result.outcome !== 'injected') return;
  assert.deepEqual(result.warnings, []);
  const sidecar = result.pod.spec?.initContainers?.[0];
  const proxyPort = sidecar?.ports?.find((p) => p.containerPort === settings.proxyPort);
  // The Service's named targetPort is now the proxy's.
  assert.equal(proxyPort?.name, service.spec.ports[0].targetPort);
  const env = Object.fromEntries((sidecar?.env ?? []).map((e) => [e.name, e.value]));
  assert.equal(env.VEIL_S3_ENDPOINT, 'http://minio.minio.svc:9000');
  assert.equal(env.VEIL_S3_BUCKET, 'veil-evidence');
});

test("the default policy admits the sample caller's service account", async () => {
  const values = parse(await readFile(join(repoRoot, 'examples/values-kind.yaml'), 'utf8'));
  const rendered = await render(cp.dir, values, { namespace: 'veil-system' });
  const spec = policySpecSchema.parse(one(rendered.objects, 'EmbeddingPolicy').spec);
  const caller = all(await manifests('examples/embedding-deployment.yaml'), 'ServiceAccount').find(
    (sa) => sa.metadata.name === 'caller',
  );
  assert.ok(caller);
  const group = `system:serviceaccounts:${caller.metadata.namespace}`;
  assert.ok(spec.access.rules.some((rule) => rule.action === 'allow' && rule.groups.includes(group)));
  assert.deepEqual(spec.authentication.serviceAccountTokens?.audiences, ['veil']);
  // The README's token carries that audience.
  assert.match(await readmeSection(), /kubectl -n ml create token caller --audience veil/);
});

test('MinIO users, bucket and policies agree across the kind manifests, the compose demo and the README', async () => {
  const minio = await manifests('examples/minio.yaml');
  const users = one(minio, 'Secret', 'minio-users').stringData;
  const policies = one(minio, 'ConfigMap', 'minio-policies').data;
  for (const name of ['veil-writer.json', 'veil-auditor.json']) {
    const compose = JSON.parse(await readFile(join(repoRoot, 'examples/compose', name), 'utf8'));
    assert.deepEqual(JSON.parse(policies[name]), compose, `${name} is the same in both demos`);
  }
  const job = one(minio, 'Job').spec.template.spec.containers[0].args[0] as string;
  assert.match(job, /mc mb --with-lock --ignore-existing demo\/veil-evidence/);
  assert.match(job, /mc retention set --default COMPLIANCE 1d demo\/veil-evidence/);

  const section = await readmeSection();
  const values = parse(await readFile(join(repoRoot, 'examples/values-kind.yaml'), 'utf8'));
  const secret = values.s3.credentialsSecret;
  assert.ok(
    section.includes(`-n ml create secret generic ${secret.name}`) &&
      section.includes(`--from-literal=AWS_ACCESS_KEY_ID=${users.WRITER_ACCESS_KEY}`) &&
      section.includes(`--from-literal=AWS_SECRET_ACCESS_KEY=${users.WRITER_SECRET_KEY}`),
    'the README creates the writer Secret the chart names',
  );
  assert.ok(
    section.includes(
      `AWS_ACCESS_KEY_ID=${users.AUDITOR_ACCESS_KEY} AWS_SECRET_ACCESS_KEY=${users.AUDITOR_SECRET_KEY}`,
    ),
  );
  assert.equal(values.s3.bucket, 'veil-evidence');
});

test('every file and name the README quickstart uses exists', async () => {
  const section = await readmeSection();
  for (const file of section.matchAll(/(?:-f|--config) ((?:examples\/|kind-)[\w./-]+|Dockerfile\.\w+)/g)) {
    await access(join(repoRoot, file[1] as string));
  }
  await access(join(repoRoot, 'charts/veil/Chart.yaml'));
  const kind = parse(await readFile(join(repoRoot, 'kind-config.yaml'), 'utf8'));
  assert.equal(kind.kind, 'Cluster');
  assert.match(section, new RegExp(`--name ${kind.name}\\b`));
  // The images the README builds are the ones the chart runs by default.
  const rendered = await render(cp.dir, {}, { namespace: 'veil-system' });
  const settings = JSON.parse(
    one(rendered.objects, 'ConfigMap', 'veil-injector-settings').data['settings.json'],
  );
  const injectorImage = one(rendered.objects, 'Deployment').spec.template.spec.containers[0].image;
  for (const image of [settings.sidecarImage, injectorImage]) {
    assert.match(section, new RegExp(`-t ${image.replace('.', '\\.')} `));
    assert.ok(section.includes(`kind load docker-image ${settings.sidecarImage} ${injectorImage}`));
  }
});
