// The Helm chart, rendered by the real helm and judged by a real kube-apiserver:
// lint, the values schema, server-side dry-runs of several value sets, and the
// names, ports and settings the chart shares with the code.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { policySpecSchema } from '@veil/core';
import {
  injectionSettingsSchema,
  isExcludedNamespace,
  parseInjectorConfig,
  sidecarNames,
  veilAnnotations,
  veilLabels,
} from '@veil/injector';
import { type ControlPlane, infraBinary, startControlPlane } from '../../harness/index.ts';
import {
  all,
  chartDir,
  helm,
  type Manifest,
  one,
  type Rendered,
  render,
  repoRoot,
  valueSets,
} from './support.ts';

const run = promisify(execFile);

let cp: ControlPlane;
let namespaces = 0;

before(async () => {
  cp = await startControlPlane();
  // The chart's CRDs, installed for real as `helm install` does before the rest.
  await kubectl('apply', '--server-side', '-f', join(chartDir, 'crds'));
  await kubectl(
    'wait',
    '--for=condition=Established',
    '--timeout=60s',
    'crd/embeddingpolicies.veil.dev',
    'crd/embeddingapprovals.veil.dev',
  );
});
after(async () => {
  await cp?.stop();
});

function kubectl(...args: string[]) {
  return run(infraBinary('kubectl'), ['--kubeconfig', cp.kubeconfig, ...args], {
    maxBuffer: 64 * 1024 * 1024,
  });
}

/** A namespace of its own for every rendering: nothing here deletes one. */
async function freshNamespace(prefix: string): Promise<string> {
  const name = `${prefix}-${++namespaces}`;
  await kubectl('create', 'namespace', name);
  return name;
}

async function dryRunServer(rendered: Rendered): Promise<string> {
  const { stdout } = await kubectl('apply', '--dry-run=server', '-f', rendered.file);
  return stdout;
}

/** Every object must be accepted, each one reported by kubectl. */
function assertAllAccepted(rendered: Rendered, stdout: string): void {
  const lines = stdout.trim().split('\n');
  assert.equal(lines.length, rendered.objects.length, stdout);
  for (const line of lines) assert.match(line, /\(server dry run\)$/);
}

function settingsOf(objects: Manifest[]) {
  const configMap = one(objects, 'ConfigMap', 'veil-injector-settings');
  return injectionSettingsSchema.parse(JSON.parse(configMap.data['settings.json']));
}

// The settings the injector needs; everything else takes the code's defaults.
const minimalSettings = {
  sidecarImage: 'x',
  sidecarVersion: 'x',
  injectorNamespace: 'x',
  controllerUrl: 'https://x',
  cluster: 'x',
};

// What the code defaults to, for the names and ports the chart must repeat.
const codeDefaults = injectionSettingsSchema.parse(minimalSettings);

describe('chart files', () => {
  test('the chart CRDs are byte-for-byte copies of crds/ (copy them after `npm run gen:crds`)', async () => {
    const source = (await readdir(join(repoRoot, 'crds'))).sort();
    const copies = (await readdir(join(chartDir, 'crds'))).sort();
    assert.deepEqual(copies, source);
    for (const file of source) {
      const [a, b] = await Promise.all([
        readFile(join(repoRoot, 'crds', file), 'utf8'),
        readFile(join(chartDir, 'crds', file), 'utf8'),
      ]);
      assert.ok(a === b, `charts/veil/crds/${file} differs from crds/${file}: run npm run gen:crds`);
    }
  });

  test('helm lint and helm lint --strict are clean, with every value set', async () => {
    const sets = [
      valueSets.defaults(),
      valueSets.certManager('ml'),
      valueSets.externalS3(['ml', 'search']),
      valueSets.networkPolicyOff('ml'),
      valueSets.selfManagedLifetimes(),
    ];
    for (const [index, values] of sets.entries()) {
      const file = join(cp.dir, `lint-${index}.json`);
      await writeFile(file, JSON.stringify(values));
      for (const strict of [[], ['--strict']]) {
        const { stdout } = await helm(['lint', ...strict, chartDir, '-f', file]);
        assert.match(stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
        assert.doesNotMatch(stdout, /\[(WARNING|ERROR)\]/, stdout);
      }
    }
  });

  test('NOTES give auditors a pull command that reaches the bucket as the chart does', async () => {
    const values = valueSets.externalS3(['ml']);
    const file = join(cp.dir, 'notes.json');
    await writeFile(file, JSON.stringify(values));
    const { stdout } = await helm([
      'install',
      'veil',
      chartDir,
      '--dry-run=client',
      '-n',
      'veil-system',
      '-f',
      file,
    ]);
    const pull = stdout.split('\n').find((line) => line.includes('veil evidence pull'));
    assert.equal(
      pull?.trim(),
      `Auditors:  veil evidence pull --bucket ${values.s3.bucket} --endpoint ${values.s3.endpoint} --region ${values.s3.region} --path-style --prefix ${values.s3.prefix} --out evidence/`,
      stdout,
    );
  });

  test('values.schema.json refuses bad values with the path at fault', async () => {
    const bad: [object, RegExp][] = [
      [{ certs: { mode: 'foo' } }, /\/certs\/mode/],
      [{ cluster: 'Not_A_Label' }, /\/cluster/],
      [{ s3: { endpoint: 'ftp://s3.example.com' } }, /\/s3\/endpoint/],
      // The endpoint reaches the settings ConfigMap and every pod's environment in clear.
      [{ s3: { endpoint: 'https://minio:secret@s3.example.com' } }, /\/s3\/endpoint/],
      [{ s3: { prefix: 'team-a/../team-b/' } }, /\/s3\/prefix/],
      // Past 2^31 - 1 ms a Node timer fires at once: the leader would flap.
      [{ injector: { leaderElection: { leaseDurationSeconds: 2_147_484 } } }, /leaseDurationSeconds/],
      [{ injector: { leaderElection: { renewSeconds: 0.05 } } }, /renewSeconds/],
      [{ sidecar: { proxyPort: 70_000 } }, /\/sidecar\/proxyPort/],
      [{ sidecar: { hashKey: { secretName: '' } } }, /\/sidecar\/hashKey\/secretName/],
      [{ sidecar: { hashKey: { key: 'a/b' } } }, /\/sidecar\/hashKey\/key/],
      [{ sidecar: { resources: { requests: { cpu: 1 } } } }, /\/sidecar\/resources\/requests\/cpu/],
      [{ sidecar: { resources: { limits: { memory: '256m' } } } }, /\/sidecar\/resources\/limits\/memory/],
      [{ certs: { selfManaged: { renewFraction: 0.6 } } }, /\/certs\/selfManaged\/renewFraction/],
      [{ sidecar: { tuning: { bodyTimeoutMs: 0 } } }, /\/sidecar\/tuning\/bodyTimeoutMs/],
      [{ sidecar: { tuning: { spoolCapacityBytes: '1Gi' } } }, /\/sidecar\/tuning\/spoolCapacityBytes/],
      [
        { sidecar: { tuning: { auditCloseGraceSeconds: 3601 } } },
        /\/sidecar\/tuning\/auditCloseGraceSeconds/,
      ],
      [{ sidecar: { tuning: { bodyMemoryBytes: 2 ** 30 + 1 } } }, /\/sidecar\/tuning\/bodyMemoryBytes/],
      [{ sidecar: { tuning: { bodyTimeout: 1000 } } }, /additional propert.*bodyTimeout/],
      [{ sidecar: { otelEnv: { AWS_SECRET_ACCESS_KEY: 'x' } } }, /\/sidecar\/otelEnv/],
      [{ s3: { prefix: 'a b' } }, /\/s3\/prefix/],
      [{ certs: { selfManaged: { renewBeforeDays: 30 } } }, /additional propert.*renewBeforeDays/],
      [
        { oidc: { issuers: [{ issuer: 'http://login.example.com', audiences: ['veil'] }] } },
        /\/oidc\/issuers\/0\/issuer/,
      ],
      [{ injector: { replica: 3 } }, /additional propert.*replica/],
      // The chart adds the tag or digest itself: one in the repository makes an unpullable image.
      [{ images: { sidecar: { repository: 'veil sidecar:1' } } }, /\/images\/sidecar\/repository/],
      [{ images: { injector: { repository: 'veil-injector:0.1.0' } } }, /\/images\/injector\/repository/],
      [
        { images: { sidecar: { repository: `veil-sidecar@sha256:${'a'.repeat(64)}` } } },
        /\/images\/sidecar\/repository/,
      ],
      [{ typo: true }, /additional propert.*typo/],
    ];
    for (const [values, message] of bad) {
      const file = join(cp.dir, 'bad-values.json');
      await writeFile(file, JSON.stringify(values));
      await assert.rejects(
        helm(['template', 'veil', chartDir, '-f', file]),
        (error: Error & { stderr: string }) => {
          assert.match(error.stderr, message);
          return true;
        },
      );
    }
  });

  test("the schema admits a sidecar resource quantity exactly when the injector's settings do", async () => {
    // A quantity the schema lets through but the injector refuses stops every replica at start.
    const samples: Record<string, unknown[]> = {
      cpu: ['100m', '0.5', '.25', '2', 1, '0', '0m', '1.5m', '0.1234', '1e3', '-1'],
      memory: [
        '128Mi',
        '1Gi',
        '1.5G',
        '64k',
        256,
        '256m',
        '0Mi',
        '1ki',
        '1e9',
        '64Mi',
        '63Mi',
        '128',
        '0.1Gi',
      ],
    };
    for (const [resource, quantities] of Object.entries(samples)) {
      for (const quantity of quantities) {
        // As its own limit too: a request above the limit is refused for another reason.
        const resources = { requests: { [resource]: quantity }, limits: { [resource]: quantity } };
        const injectorAccepts = injectionSettingsSchema.safeParse({ ...minimalSettings, resources }).success;
        const file = join(cp.dir, 'quantity-values.json');
        await writeFile(file, JSON.stringify({ sidecar: { resources } }));
        const label = `${resource}: ${JSON.stringify(quantity)}`;
        if (injectorAccepts) {
          await helm(['template', 'veil', chartDir, '-f', file]);
        } else {
          await assert.rejects(
            helm(['template', 'veil', chartDir, '-f', file]),
            (error: Error & { stderr: string }) => {
              assert.match(error.stderr, new RegExp(`/sidecar/resources/requests/${resource}`), label);
              return true;
            },
            label,
          );
        }
      }
    }
  });

  test('cross-field checks the schema cannot express fail the render', async () => {
    const bad: [object, RegExp][] = [
      [{ sidecar: { adminPort: 15_080 } }, /proxyPort and sidecar.adminPort must differ/],
      [{ injector: { leaderElection: { renewSeconds: 10 } } }, /renewSeconds must be at most half/],
      // The Service gives the webhook 443 and the other two their own numbers.
      [{ controller: { port: 443 } }, /controller.port and approvals.port must differ from 443/],
      [{ approvals: { port: 443 } }, /controller.port and approvals.port must differ from 443/],
      [
        { certs: { selfManaged: { caValidityDays: 30, validityDays: 60 } } },
        /validityDays must be at most caValidityDays/,
      ],
      [
        { sidecar: { tuning: { bodyMemoryBytes: 268_435_456 } } },
        /sidecar\.tuning\.bodyMemoryBytes \(268435456\) must be below sidecar\.resources\.limits\.memory \(256Mi\)/,
      ],
    ];
    for (const [values, message] of bad) {
      const file = join(cp.dir, 'bad-cross.json');
      await writeFile(file, JSON.stringify(values));
      await assert.rejects(
        helm(['template', 'veil', chartDir, '-f', file]),
        (error: Error & { stderr: string }) => {
          assert.match(error.stderr, message);
          return true;
        },
      );
    }
  });
});

describe('server-side dry-run against kube-apiserver', () => {
  test('defaults: every object is accepted', async () => {
    const namespace = await freshNamespace('veil-defaults');
    const rendered = await render(cp.dir, valueSets.defaults(), { namespace });
    assertAllAccepted(rendered, await dryRunServer(rendered));

    const { objects } = rendered;
    const deployment = one(objects, 'Deployment');
    assert.equal(deployment.spec.replicas, 2);
    assert.equal(one(objects, 'PodDisruptionBudget').spec.minAvailable, 1);
    // Self-managed certificates: the chart renders no Secret and no caBundle
    // (the injector creates the one and patches the other), so an upgrade never
    // overwrites what the injector wrote.
    assert.equal(all(objects, 'Secret').length, 0);
    const configs = all(objects, 'MutatingWebhookConfiguration');
    assert.deepEqual(configs.map((c) => c.metadata.name).sort(), ['veil', 'veil-approvals']);
    for (const config of configs) {
      assert.equal(config.metadata.annotations?.['cert-manager.io/inject-ca-from'], undefined);
      for (const webhook of config.webhooks) {
        assert.equal(webhook.clientConfig.caBundle, undefined);
        assert.equal(webhook.failurePolicy, 'Fail');
      }
    }
    const env = envOf(deployment);
    assert.equal(env.VEIL_CERTS_MODE, 'self-managed');
    assert.equal(env.VEIL_CERTS_SECRET, 'veil-webhook-tls');
    assert.equal(env.VEIL_CERTS_SERVICES, one(objects, 'Service').metadata.name);
    assert.equal(env.VEIL_CERTS_WEBHOOKS, 'veil,veil-approvals');
    // Lifetimes left to the injector's defaults.
    assert.equal(env.VEIL_CERTS_CA_LIFETIME_SECONDS, undefined);
    assert.equal(env.VEIL_CERTS_SERVING_LIFETIME_SECONDS, undefined);
    assert.equal(env.VEIL_CERTS_RENEW_FRACTION, undefined);
    const tls = deployment.spec.template.spec.volumes.find((v: { name: string }) => v.name === 'tls');
    assert.ok(tls.emptyDir, 'the serving pair is written to an emptyDir');
    assert.equal(tls.secret, undefined);
    const mount = deployment.spec.template.spec.containers[0].volumeMounts.find(
      (m: { name: string }) => m.name === 'tls',
    );
    assert.notEqual(mount.readOnly, true, 'the injector writes the pair');
    // Its rights: the one Secret, and the caBundle of the chart's own configurations.
    const certsRole = one(objects, 'Role', 'veil-injector-certs');
    assert.equal(certsRole.metadata.namespace, namespace);
    assert.deepEqual(certsRole.rules, [
      { apiGroups: [''], resources: ['secrets'], verbs: ['create'] },
      {
        apiGroups: [''],
        resources: ['secrets'],
        resourceNames: ['veil-webhook-tls'],
        verbs: ['get', 'update'],
      },
    ]);
    assert.equal(one(objects, 'RoleBinding', 'veil-injector-certs').roleRef.name, 'veil-injector-certs');
    const webhookRule = one(objects, 'ClusterRole').rules.find((r: { resources: string[] }) =>
      r.resources.includes('mutatingwebhookconfigurations'),
    );
    assert.deepEqual(webhookRule, {
      apiGroups: ['admissionregistration.k8s.io'],
      resources: ['mutatingwebhookconfigurations'],
      resourceNames: ['veil', 'veil-approvals'],
      verbs: ['get', 'patch'],
    });
    // No bucket: no S3 settings, and nothing per workload namespace.
    assert.equal(settingsOf(objects).s3, undefined);
    assert.equal(all(objects, 'NetworkPolicy').length, 0);
    assert.equal(all(objects, 'EmbeddingPolicy').length, 0);
  });

  test('helm uninstall keeps the default policy and the NetworkPolicy, which upgrades still update', async () => {
    const release = 'veil-keep';
    const namespace = await freshNamespace('veil-keep');
    const workload = await freshNamespace('veil-keep-ml');
    const values = (retentionDays: number, team: string) => ({
      workloadNamespaces: [workload],
      defaultPolicy: { spec: { audit: { retentionDays } } },
      networkPolicy: { proxyFrom: [{ namespaceSelector: { matchLabels: { team } } }] },
    });
    const helmRelease = async (verb: 'install' | 'upgrade', retentionDays: number, team: string) => {
      const file = join(cp.dir, `keep-${verb}.json`);
      await writeFile(file, JSON.stringify(values(retentionDays, team)));
      // No cluster here runs the signing-key hook's Job: skip hooks, install the rest.
      await helm([
        verb,
        release,
        chartDir,
        '--kubeconfig',
        cp.kubeconfig,
        '-n',
        namespace,
        '--no-hooks',
        '-f',
        file,
      ]);
    };
    const kept = async () => {
      const policy = JSON.parse(
        (await kubectl('get', 'embeddingpolicy', 'default', '-n', workload, '-o', 'json')).stdout,
      );
      const network = JSON.parse(
        (await kubectl('get', 'networkpolicy', `${release}-injected-pods`, '-n', workload, '-o', 'json'))
          .stdout,
      );
      return {
        retentionDays: policy.spec.audit.retentionDays,
        team: network.spec.ingress[0].from[0].namespaceSelector.matchLabels.team,
      };
    };

    await helmRelease('install', 365, 'search');
    assert.deepEqual(await kept(), { retentionDays: 365, team: 'search' });
    await helmRelease('upgrade', 30, 'ranking');
    assert.deepEqual(await kept(), { retentionDays: 30, team: 'ranking' });

    await helm(['uninstall', release, '--kubeconfig', cp.kubeconfig, '-n', namespace]);
    assert.deepEqual(await kept(), { retentionDays: 30, team: 'ranking' });
    const gone = await kubectl('get', 'deployment,mutatingwebhookconfiguration', '-A', '-o', 'name');
    assert.doesNotMatch(gone.stdout, new RegExp(`${release}`));
    // A new install under the same name and namespace takes them back.
    await helmRelease('install', 365, 'search');
    assert.deepEqual(await kept(), { retentionDays: 365, team: 'search' });
    await helm(['uninstall', release, '--kubeconfig', cp.kubeconfig, '-n', namespace]);
  });

  test('the longest release name helm allows: every object is accepted', async () => {
    const namespace = await freshNamespace('veil-long');
    const release = `veil-${'r'.repeat(48)}`;
    assert.equal(release.length, 53);
    const rendered = await render(cp.dir, valueSets.defaults(), { namespace, release });
    assertAllAccepted(rendered, await dryRunServer(rendered));
  });

  test('cert-manager: Issuer and Certificate are accepted where their CRDs exist, and the CA is injected', async () => {
    // cert-manager is not installed here: its two kinds get stub CRDs that accept
    // any spec, so the API server checks everything else for real and only the
    // cert-manager fields go unchecked.
    await installCertManagerStubs();
    const namespace = await freshNamespace('veil-cm');
    const workload = await freshNamespace('ml-cm');
    const rendered = await render(cp.dir, valueSets.certManager(workload), { namespace });
    assertAllAccepted(rendered, await dryRunServer(rendered));

    const { objects } = rendered;
    const serving = one(objects, 'Certificate', 'veil-webhook');
    assert.equal(serving.spec.secretName, 'veil-webhook-tls');
    assert.ok(serving.spec.dnsNames.includes(`veil-injector.${namespace}.svc`));
    assert.equal(serving.spec.issuerRef.name, 'veil-ca');
    assert.equal(one(objects, 'Certificate', 'veil-ca').spec.isCA, true);
    assert.equal(all(objects, 'Issuer').length, 2);
    // cert-manager writes the Secret; the chart does not.
    assert.equal(all(objects, 'Secret').length, 0);
    const configs = all(objects, 'MutatingWebhookConfiguration');
    assert.equal(configs.length, 2);
    for (const config of configs) {
      assert.equal(
        config.metadata.annotations?.['cert-manager.io/inject-ca-from'],
        `${namespace}/veil-webhook`,
      );
      for (const webhook of config.webhooks) assert.equal(webhook.clientConfig.caBundle, undefined);
    }
    const deployment = one(objects, 'Deployment');
    const tls = deployment.spec.template.spec.volumes.find((v: { name: string }) => v.name === 'tls');
    assert.equal(tls.secret.secretName, 'veil-webhook-tls');
    // The injector serves the mounted pair as it is, with no rights on Secrets or webhooks.
    assert.equal(envOf(deployment).VEIL_CERTS_MODE, undefined);
    assert.equal(all(objects, 'Role').filter((r) => r.metadata.name === 'veil-injector-certs').length, 0);
    assert.doesNotMatch(JSON.stringify(one(objects, 'ClusterRole').rules), /mutatingwebhookconfigurations/);
  });

  test('self-managed lifetimes and renewal from values reach the injector', async () => {
    const { objects } = await render(cp.dir, valueSets.selfManagedLifetimes(), { namespace: 'veil-system' });
    const env = envOf(one(objects, 'Deployment'));
    assert.equal(env.VEIL_CERTS_WEBHOOKS, 'veil', 'approvals off: one configuration');
    const config = parseInjectorConfig([], { ...env, VEIL_POD_NAME: 'veil-injector-abc' });
    assert.equal(config.certsMode, 'self-managed');
    assert.deepEqual(config.certsServices, ['veil-injector']);
    assert.deepEqual(config.certsWebhooks, ['veil']);
    assert.equal(config.certsCaLifetimeSeconds, 30 * 86_400);
    assert.equal(config.certsServingLifetimeSeconds, 7 * 86_400);
    assert.equal(config.certsRenewFraction, 0.25);
    const webhookRule = one(objects, 'ClusterRole').rules.find((r: { resources: string[] }) =>
      r.resources.includes('mutatingwebhookconfigurations'),
    );
    assert.deepEqual(webhookRule.resourceNames, ['veil']);
  });

  test('external S3 with a credentials Secret, OIDC issuers and watched namespaces', async () => {
    const namespace = await freshNamespace('veil-s3');
    const workloads = [await freshNamespace('ml-s3'), await freshNamespace('search-s3')];
    const rendered = await render(cp.dir, valueSets.externalS3(workloads), { namespace });
    assertAllAccepted(rendered, await dryRunServer(rendered));

    const { objects } = rendered;
    const settings = settingsOf(objects);
    assert.deepEqual(settings.s3, {
      bucket: 'veil-evidence',
      region: 'eu-west-1',
      endpoint: 'https://s3.eu-west-1.example.com',
      forcePathStyle: true,
      prefix: 'platform/',
      credentialsSecret: {
        name: 'veil-s3',
        accessKeyIdKey: 'AWS_ACCESS_KEY_ID',
        secretAccessKeyKey: 'AWS_SECRET_ACCESS_KEY',
      },
    });
    assert.equal(settings.cluster, 'prod-eu-1');
    assert.deepEqual(settings.hashKey, { secretName: 'embeddings-hash-key', key: 'hmac.key' });
    assert.deepEqual(settings.otelEnv, {
      OTEL_TRACES_EXPORTER: 'otlp',
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://otel.monitoring:4318',
    });
    assert.equal(settings.sidecarImage, 'registry.example.com/veil/veil-sidecar:0.1.0');
    assert.equal(
      one(objects, 'Deployment').spec.template.spec.containers[0].image,
      'registry.example.com/veil/veil-injector:0.1.0',
    );

    // One default policy per workload namespace, valid by the policy schema, with the issuers.
    const policies = all(objects, 'EmbeddingPolicy');
    assert.deepEqual(policies.map((p) => p.metadata.namespace).sort(), [...workloads].sort());
    for (const policy of policies) {
      const spec = policySpecSchema.parse(policy.spec);
      assert.deepEqual(
        spec.authentication.oidc.map((o) => o.issuer),
        ['https://login.example.com/realms/ml'],
      );
      assert.ok(
        spec.access.rules.some((r) =>
          r.groups.includes(`system:serviceaccounts:${policy.metadata.namespace}`),
        ),
      );
    }
    // Watched namespaces: a Role in each, and no cluster-wide right to pods or policies.
    const roles = all(objects, 'Role').filter((r) => r.metadata.name === 'veil-injector');
    assert.deepEqual(roles.map((r) => r.metadata.namespace).sort(), [...workloads].sort());
    const clusterRole = one(objects, 'ClusterRole');
    // Approvals stay cluster-wide: sidecars anywhere open them, and the expiry sweep lists them all.
    // So do the (cluster-scoped) webhook configurations whose caBundle the injector patches.
    assert.deepEqual(clusterRole.rules.flatMap((r: { resources: string[] }) => r.resources).sort(), [
      'embeddingapprovals',
      'embeddingapprovals/status',
      'mutatingwebhookconfigurations',
      'namespaces',
      'tokenreviews',
    ]);
    // The webhooks that read pods call in only where the injector may read them.
    const webhooks = one(objects, 'MutatingWebhookConfiguration', 'veil').webhooks;
    for (const name of ['exec.pods.veil.dev', 'binding.pods.veil.dev']) {
      const webhook = webhooks.find((w: { name: string }) => w.name === name);
      assert.deepEqual(webhook.namespaceSelector.matchExpressions.at(-1), {
        key: 'kubernetes.io/metadata.name',
        operator: 'In',
        values: workloads,
      });
    }
    for (const role of roles) {
      const pods = role.rules.find((r: { resources: string[] }) => r.resources.includes('pods'));
      assert.deepEqual(pods.verbs, ['get', 'list', 'watch', 'patch']);
    }
    const env = envOf(one(objects, 'Deployment'));
    assert.equal(env.VEIL_WATCH_NAMESPACES, workloads.join(','));
    // The proxy port admits only the listed peers; the admin port the injector and the metrics scrapers.
    for (const policy of all(objects, 'NetworkPolicy')) {
      assert.deepEqual(policy.spec.ingress[0].from, [
        { namespaceSelector: { matchLabels: { team: 'search' } } },
      ]);
      const [injector, ...scrapers] = policy.spec.ingress[1].from;
      assert.deepEqual(injector.namespaceSelector.matchLabels, { 'kubernetes.io/metadata.name': namespace });
      assert.deepEqual(scrapers, valueSets.externalS3(workloads).networkPolicy.metricsFrom);
    }
  });

  test('NetworkPolicy off: none is rendered, the rest is accepted', async () => {
    const namespace = await freshNamespace('veil-nonp');
    const workload = await freshNamespace('ml-nonp');
    const rendered = await render(cp.dir, valueSets.networkPolicyOff(workload), { namespace });
    assertAllAccepted(rendered, await dryRunServer(rendered));
    assert.equal(all(rendered.objects, 'NetworkPolicy').length, 0);
    assert.equal(all(rendered.objects, 'EmbeddingPolicy').length, 1);
  });

  test('sidecar ports changed on upgrade: the NetworkPolicy still admits pods injected with the old ones', async () => {
    const namespace = await freshNamespace('veil-ports');
    const workload = await freshNamespace('ml-ports');
    const rendered = await render(
      cp.dir,
      { workloadNamespaces: [workload], sidecar: { proxyPort: 18_080, adminPort: 18_090 } },
      { namespace },
    );
    assertAllAccepted(rendered, await dryRunServer(rendered));
    assert.equal(settingsOf(rendered.objects).adminPort, 18_090);
    // Running pods keep the numbers they were injected with; their port names do not change.
    const policy = one(rendered.objects, 'NetworkPolicy');
    assert.deepEqual(
      policy.spec.ingress.map((rule: { ports: { port: number | string }[] }) =>
        rule.ports.map((p) => p.port),
      ),
      [[sidecarNames.proxyPort, 18_080], [sidecarNames.adminPort]],
    );
  });
});

describe('the chart matches the code', () => {
  test('injection settings parse with the injector schema and repeat its ports and names', async () => {
    const namespace = 'veil-system';
    const workload = 'ml';
    const rendered = await render(cp.dir, valueSets.certManager(workload), { namespace });
    const { objects } = rendered;
    const settings = settingsOf(objects);
    const appVersion = (await helm(['show', 'chart', chartDir])).stdout.match(
      /^appVersion: "?([^"\n]+)"?$/m,
    )?.[1];
    const sidecarPackage = JSON.parse(
      await readFile(join(repoRoot, 'packages/sidecar/package.json'), 'utf8'),
    );
    const injectorPackage = JSON.parse(
      await readFile(join(repoRoot, 'packages/injector/package.json'), 'utf8'),
    );

    // Images: the chart's appVersion is the packages' version, and both images carry it.
    assert.equal(appVersion, sidecarPackage.version);
    assert.equal(appVersion, injectorPackage.version);
    assert.equal(settings.sidecarImage, `veil-sidecar:${appVersion}`);
    assert.equal(settings.sidecarVersion, appVersion);
    assert.equal(
      one(objects, 'Deployment').spec.template.spec.containers[0].image,
      `veil-injector:${appVersion}`,
    );

    // Ports and the public key ConfigMap: the code's defaults.
    assert.equal(settings.proxyPort, codeDefaults.proxyPort);
    assert.equal(settings.adminPort, codeDefaults.adminPort);
    assert.deepEqual(settings.controllerKey, codeDefaults.controllerKey);
    assert.deepEqual(settings.hashKey, codeDefaults.hashKey);
    assert.equal(settings.injectorNamespace, namespace);
    // By the names the injector gives the ports, so pods injected before a port
    // change still match; the proxy port by number too, for a proxy that took the
    // model's port name over.
    const policy = one(objects, 'NetworkPolicy');
    assert.deepEqual(
      policy.spec.ingress.map((rule: { ports: { port: number | string }[] }) =>
        rule.ports.map((p) => p.port),
      ),
      [[sidecarNames.proxyPort, codeDefaults.proxyPort], [sidecarNames.adminPort]],
    );
    assert.deepEqual(policy.spec.podSelector.matchLabels, { [veilLabels.injected]: 'true' });
    assert.equal(policy.spec.ingress[1].from.length, 1, 'by default the admin port admits the injector only');

    // The controller URL sidecars pull from is the Service's controller port.
    const service = one(objects, 'Service');
    const servicePort = service.spec.ports.find((p: { name: string }) => p.name === 'controller');
    assert.equal(settings.controllerUrl, `https://veil-injector.${namespace}.svc:${servicePort.port}`);
    // And the approvals API sidecars open held requests on is the Service's approvals port.
    const approvalsPort = service.spec.ports.find((p: { name: string }) => p.name === 'approvals');
    assert.equal(settings.approvalsUrl, `https://veil-injector.${namespace}.svc:${approvalsPort.port}`);
  });

  test("the Deployment's environment is a valid injector configuration that points at the chart's files and ports", async () => {
    const rendered = await render(cp.dir, valueSets.defaults(), { namespace: 'veil-system' });
    const { objects } = rendered;
    const deployment = one(objects, 'Deployment');
    const pod = deployment.spec.template.spec;
    const container = pod.containers[0];
    const config = parseInjectorConfig([], { ...envOf(deployment), VEIL_POD_NAME: 'veil-injector-abc' });

    const mountOf = (volume: string) =>
      container.volumeMounts.find((m: { name: string }) => m.name === volume).mountPath;
    const volume = (name: string) => pod.volumes.find((v: { name: string }) => v.name === name);
    assert.equal(config.settingsFile, `${mountOf('settings')}/settings.json`);
    assert.equal(volume('settings').configMap.name, 'veil-injector-settings');
    assert.equal(config.tlsCertFile, `${mountOf('tls')}/tls.crt`);
    assert.equal(config.tlsKeyFile, `${mountOf('tls')}/tls.key`);
    // Self-managed: the injector writes the pair of the Secret it keeps onto an emptyDir.
    assert.ok(volume('tls').emptyDir);
    assert.equal(config.certsMode, 'self-managed');
    assert.equal(config.certsSecretName, 'veil-webhook-tls');
    assert.deepEqual(config.certsServices, [one(objects, 'Service').metadata.name]);
    assert.deepEqual(
      config.certsWebhooks,
      all(objects, 'MutatingWebhookConfiguration').map((c) => c.metadata.name),
    );
    assert.equal(config.signingKeyFile, `${mountOf('signing-key')}/jwk.json`);
    assert.equal(volume('signing-key').secret.secretName, 'veil-controller-signing-key');
    assert.equal(config.identity, 'veil-injector-abc');
    // The controller that may expire approvals is this Deployment's own service account.
    assert.deepEqual(config.approvalControllers, [
      `system:serviceaccount:veil-system:${pod.serviceAccountName}`,
    ]);
    assert.equal(one(objects, 'ServiceAccount', pod.serviceAccountName).metadata.namespace, 'veil-system');
    assert.deepEqual(config.namespaces, []);

    const port = (name: string) =>
      container.ports.find((p: { name: string }) => p.name === name).containerPort;
    assert.equal(config.webhookPort, port('webhook'));
    assert.equal(config.pullPort, port('controller'));
    assert.equal(config.approvalsPort, port('approvals'));
    const service = one(objects, 'Service');
    assert.deepEqual(
      service.spec.ports.map((p: { port: number; targetPort: string }) => [p.port, p.targetPort]),
      [
        [443, 'webhook'],
        [config.pullPort, 'controller'],
        [config.approvalsPort, 'approvals'],
      ],
    );
    // The Lease the replicas campaign for is the one their Role may renew.
    const leaseRole = one(objects, 'Role', 'veil-injector-leader-election');
    assert.deepEqual(leaseRole.rules[1].resourceNames, [config.leaseName]);
    // The hook creates the Secret the Deployment mounts.
    const job = one(objects, 'Job');
    const jobEnv = Object.fromEntries(
      job.spec.template.spec.containers[0].env.map((e: { name: string; value: string }) => [e.name, e.value]),
    );
    assert.equal(jobEnv.VEIL_SECRET_NAME, volume('signing-key').secret.secretName);
    assert.equal(
      job.spec.template.spec.containers[0].args[0],
      await readFile(join(chartDir, 'files/controller-signing-key.mjs'), 'utf8'),
    );

    // Pod Security "restricted".
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault');
    assert.equal(container.securityContext.allowPrivilegeEscalation, false);
    assert.equal(container.securityContext.readOnlyRootFilesystem, true);
    assert.deepEqual(container.securityContext.capabilities.drop, ['ALL']);
    assert.ok(container.resources.requests.cpu && container.resources.requests.memory);
  });

  test('approvals off: no approvals webhook, port or rights', async () => {
    const { objects } = await render(cp.dir, { approvals: { enabled: false } }, { namespace: 'veil-system' });
    assert.deepEqual(
      all(objects, 'MutatingWebhookConfiguration').map((c) => c.metadata.name),
      ['veil'],
    );
    assert.deepEqual(
      one(objects, 'Service').spec.ports.map((p: { name: string }) => p.name),
      ['webhook', 'controller'],
    );
    const deployment = one(objects, 'Deployment');
    assert.equal(envOf(deployment).VEIL_APPROVALS_PORT, undefined);
    assert.equal(parseInjectorConfig([], envOf(deployment)).approvalsPort, undefined);
    const resources = one(objects, 'ClusterRole').rules.flatMap((r: { resources: string[] }) => r.resources);
    assert.ok(!resources.some((r: string) => r.startsWith('embeddingapprovals')));
  });

  test('the webhooks select by the annotation and labels the injector reads, and exclude what it excludes', async () => {
    const namespace = 'veil-system';
    const rendered = await render(
      cp.dir,
      { webhook: { excludeNamespaces: ['istio-system'] } },
      { namespace },
    );
    const settings = settingsOf(rendered.objects);
    const config = one(rendered.objects, 'MutatingWebhookConfiguration', 'veil');
    const byName = Object.fromEntries(config.webhooks.map((w: { name: string }) => [w.name, w]));
    assert.deepEqual(Object.keys(byName), [
      'inject.pods.veil.dev',
      'namespace.pods.veil.dev',
      'guard.pods.veil.dev',
      'exec.pods.veil.dev',
      'binding.pods.veil.dev',
    ]);
    for (const webhook of config.webhooks) {
      assert.equal(webhook.failurePolicy, 'Fail');
      assert.equal(webhook.clientConfig.service.path, '/mutate-pods');
      const excluded = webhook.namespaceSelector.matchExpressions.find(
        (e: { key: string }) => e.key === 'kubernetes.io/metadata.name',
      );
      assert.equal(excluded.operator, 'NotIn');
      assert.deepEqual(excluded.values, [namespace, 'kube-system', 'istio-system']);
      // Every namespace the injector itself never injects is outside the webhook.
      for (const name of ['kube-system', namespace]) {
        assert.ok(isExcludedNamespace(name, settings) && excluded.values.includes(name));
      }
    }
    const annotation = veilAnnotations.inject;
    assert.ok(byName['inject.pods.veil.dev'].matchConditions[0].expression.includes(`'${annotation}'`));
    assert.ok(byName['namespace.pods.veil.dev'].matchConditions[0].expression.includes(`'${annotation}'`));
    assert.deepEqual(byName['namespace.pods.veil.dev'].namespaceSelector.matchExpressions[0], {
      key: veilLabels.namespaceInjection,
      operator: 'In',
      values: ['enabled'],
    });
    assert.deepEqual(byName['guard.pods.veil.dev'].objectSelector.matchLabels, {
      [veilLabels.injected]: 'true',
    });
    // Creations of labelled pods too (the other entries see opted-in pods only), and
    // status writes, which store the labels and annotations they carry.
    assert.deepEqual(byName['guard.pods.veil.dev'].rules[0].operations, ['CREATE', 'UPDATE']);
    // Debug containers are an update of their own subresource.
    assert.deepEqual(byName['guard.pods.veil.dev'].rules[0].resources, [
      'pods',
      'pods/status',
      'pods/ephemeralcontainers',
    ]);
    // exec and attach: the options carry no pod labels, so no objectSelector; a
    // condition lets through only what may reach the sidecar.
    const exec = byName['exec.pods.veil.dev'];
    assert.deepEqual(exec.rules[0].operations, ['CONNECT']);
    assert.deepEqual(exec.rules[0].resources, ['pods/exec', 'pods/attach']);
    assert.equal(exec.objectSelector, undefined);
    assert.ok(exec.matchConditions[0].expression.includes(`'${sidecarNames.container}'`));
    // Bindings at both of the paths that take them, and only those carrying Veil's keys.
    const binding = byName['binding.pods.veil.dev'];
    assert.deepEqual(binding.rules[0].operations, ['CREATE']);
    assert.deepEqual(binding.rules[0].resources, ['pods/binding', 'bindings']);
    assert.equal(binding.objectSelector, undefined);
    assert.ok(binding.matchConditions[0].expression.includes("'veil.dev/'"));

    // Approval decisions: every update of an approval and of its status is stamped.
    const approvals = one(rendered.objects, 'MutatingWebhookConfiguration', 'veil-approvals').webhooks[0];
    assert.equal(approvals.clientConfig.service.path, '/mutate-approvals');
    assert.deepEqual(approvals.rules[0].resources, ['embeddingapprovals', 'embeddingapprovals/status']);
    assert.deepEqual(approvals.rules[0].operations, ['CREATE', 'UPDATE']);
    assert.equal(approvals.failurePolicy, 'Fail');
    assert.equal(approvals.reinvocationPolicy, 'IfNeeded');
  });
});

function envOf(deployment: Manifest): Record<string, string> {
  const env: Record<string, string> = {};
  for (const variable of deployment.spec.template.spec.containers[0].env) {
    if (variable.value !== undefined) env[variable.name] = variable.value;
  }
  return env;
}

let stubsInstalled = false;

async function installCertManagerStubs(): Promise<void> {
  if (stubsInstalled) return;
  const stub = (kind: string, plural: string) => ({
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${plural}.cert-manager.io` },
    spec: {
      group: 'cert-manager.io',
      scope: 'Namespaced',
      names: { kind, plural, singular: kind.toLowerCase(), listKind: `${kind}List` },
      versions: [
        {
          name: 'v1',
          served: true,
          storage: true,
          schema: {
            openAPIV3Schema: {
              type: 'object',
              properties: { spec: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } },
            },
          },
        },
      ],
    },
  });
  const file = join(cp.dir, 'cert-manager-stubs.json');
  await writeFile(
    file,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'List',
      items: [stub('Issuer', 'issuers'), stub('Certificate', 'certificates')],
    }),
  );
  await kubectl('apply', '-f', file);
  await kubectl(
    'wait',
    '--for=condition=Established',
    '--timeout=60s',
    'crd/issuers.cert-manager.io',
    'crd/certificates.cert-manager.io',
  );
  stubsInstalled = true;
}
