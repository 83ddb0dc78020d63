// Rendering the chart with the real helm, and reading what it rendered.
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { infraBinary } from '../../harness/index.ts';

const run = promisify(execFile);

export const repoRoot = join(import.meta.dirname, '..', '..', '..');
export const chartDir = join(repoRoot, 'charts', 'veil');

export type Manifest = {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    generation?: number;
  };
  /** Rendered manifests are checked field by field. */
  [field: string]: any;
};

export type Rendered = { file: string; text: string; objects: Manifest[] };

export async function helm(args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run(infraBinary('helm'), args, { maxBuffer: 64 * 1024 * 1024 });
}

let counter = 0;

/** `helm template` of the chart with these values, written to a file in `dir` for kubectl. */
export async function render(
  dir: string,
  values: object,
  options: { release?: string; namespace: string },
): Promise<Rendered> {
  const id = `${++counter}`;
  const valuesFile = join(dir, `values-${id}.json`);
  await writeFile(valuesFile, JSON.stringify(values, null, 2));
  const release = options.release ?? 'veil';
  const { stdout } = await helm(['template', release, chartDir, '-n', options.namespace, '-f', valuesFile]);
  const file = join(dir, `rendered-${id}.yaml`);
  await writeFile(file, stdout);
  return { file, text: stdout, objects: parseManifests(stdout) };
}

export function parseManifests(text: string): Manifest[] {
  return parseAllDocuments(text)
    .map((doc) => {
      if (doc.errors.length > 0) throw new Error(`helm rendered invalid YAML: ${doc.errors[0]?.message}`);
      return doc.toJS() as Manifest | null;
    })
    .filter((m): m is Manifest => m !== null && typeof m === 'object');
}

export function all(objects: Manifest[], kind: string): Manifest[] {
  return objects.filter((o) => o.kind === kind);
}

export function one(objects: Manifest[], kind: string, name?: string): Manifest {
  const found = all(objects, kind).filter((o) => name === undefined || o.metadata.name === name);
  if (found.length !== 1) {
    throw new Error(`expected one ${kind}${name ? ` ${name}` : ''}, rendered ${found.length}`);
  }
  return found[0] as Manifest;
}

/** The value sets the chart is tested with; namespaces are fresh per test. */
export const valueSets = {
  defaults: () => ({}),
  certManager: (workload: string) => ({
    certs: { mode: 'cert-manager' },
    workloadNamespaces: [workload],
  }),
  externalS3: (workloads: string[]) => ({
    cluster: 'prod-eu-1',
    images: { registry: 'registry.example.com/veil', tag: '0.1.0' },
    s3: {
      bucket: 'veil-evidence',
      region: 'eu-west-1',
      endpoint: 'https://s3.eu-west-1.example.com',
      forcePathStyle: true,
      prefix: 'platform/',
      credentialsSecret: { name: 'veil-s3' },
    },
    workloadNamespaces: workloads,
    controller: { watchNamespaces: workloads },
    oidc: {
      issuers: [
        { issuer: 'https://login.example.com/realms/ml', audiences: ['veil'], algorithms: ['RS256'] },
      ],
    },
    networkPolicy: {
      proxyFrom: [{ namespaceSelector: { matchLabels: { team: 'search' } } }],
      metricsFrom: [
        {
          namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } },
          podSelector: { matchLabels: { 'app.kubernetes.io/name': 'prometheus' } },
        },
      ],
    },
    sidecar: {
      hashKey: { secretName: 'embeddings-hash-key', key: 'hmac.key' },
      otelEnv: { OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://otel.monitoring:4318' },
    },
  }),
  selfManagedLifetimes: () => ({
    approvals: { enabled: false },
    certs: { selfManaged: { caValidityDays: 30, validityDays: 7, renewFraction: 0.25 } },
  }),
  networkPolicyOff: (workload: string) => ({
    networkPolicy: { enabled: false },
    workloadNamespaces: [workload],
  }),
};
