import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { Agent } from 'undici';
import { infraBinary } from './infra.ts';
import { type CertFiles, createCa, createServiceAccountKey, issueCert } from './pki.ts';
import { freePort } from './ports.ts';
import { type Managed, startProcess, waitFor } from './process.ts';

export interface User {
  readonly name: string;
  readonly groups: string[];
  /** A kubeconfig file that authenticates as this user with a client certificate. */
  readonly kubeconfig: string;
}

export interface ControlPlane {
  readonly server: string;
  readonly dir: string;
  /** The admin kubeconfig (CN=admin, O=system:masters). */
  readonly kubeconfig: string;
  readonly caCert: string;
  /** The issuer of projected service-account tokens. */
  readonly serviceAccountIssuer: string;
  kubeConfig(path?: string): KubeConfig;
  /** A client-certificate user with the given groups, for RBAC and identity tests. */
  addUser(name: string, groups?: string[]): Promise<User>;
  /** A serving certificate for 127.0.0.1 signed by the cluster CA (for webhooks the API server calls). */
  issueServingCert(name: string): Promise<CertFiles>;
  /** An undici dispatcher that trusts the API server's CA. */
  dispatcher(): Agent;
  stop(): Promise<void>;
}

async function writeKubeconfig(
  path: string,
  server: string,
  ca: string,
  user: string,
  client: CertFiles,
): Promise<void> {
  const [caData, certData, keyData] = await Promise.all([
    readFile(ca),
    readFile(client.cert),
    readFile(client.key),
  ]);
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      { name: 'veil-test', cluster: { server, 'certificate-authority-data': caData.toString('base64') } },
    ],
    users: [
      {
        name: user,
        user: {
          'client-certificate-data': certData.toString('base64'),
          'client-key-data': keyData.toString('base64'),
        },
      },
    ],
    contexts: [{ name: 'veil-test', context: { cluster: 'veil-test', user } }],
    'current-context': 'veil-test',
  };
  await writeFile(path, JSON.stringify(config, null, 2), { mode: 0o600 });
}

async function startEtcd(dir: string): Promise<{ process: Managed; url: string }> {
  const [clientPort, peerPort] = [await freePort(), await freePort()];
  const url = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const etcd = startProcess(
    'etcd',
    infraBinary('etcd'),
    [
      '--data-dir',
      join(dir, 'etcd'),
      '--listen-client-urls',
      url,
      '--advertise-client-urls',
      url,
      '--listen-peer-urls',
      peer,
      '--initial-advertise-peer-urls',
      peer,
      '--initial-cluster',
      `default=${peer}`,
      // Test data is thrown away: skipping fsync makes every write much faster.
      '--unsafe-no-fsync',
      '--log-level',
      'warn',
    ],
    join(dir, 'etcd.log'),
  );
  await waitFor('etcd', async () => {
    if (etcd.child.exitCode !== null) throw new Error(`etcd exited; see ${dir}/etcd.log`);
    return (await fetch(`${url}/health`)).ok;
  });
  return { process: etcd, url };
}

/**
 * etcd and a real kube-apiserver (envtest style: no kubelet, no controllers),
 * with a generated CA, a serving certificate for 127.0.0.1, an admin client
 * certificate, a service-account signing key and RBAC authorization.
 */
export async function startControlPlane(): Promise<ControlPlane> {
  const dir = await mkdtemp(join(tmpdir(), 'veil-kube-'));
  const pki = join(dir, 'pki');
  await mkdir(pki);
  const ca = await createCa(pki);
  const serving = await issueCert(pki, ca, {
    name: 'apiserver',
    subject: '/CN=kube-apiserver',
    usage: 'server',
    dnsNames: ['localhost', 'kubernetes', 'kubernetes.default.svc'],
    ips: ['127.0.0.1'],
  });
  const sa = await createServiceAccountKey(pki);
  const etcd = await startEtcd(dir);
  const port = await freePort();
  const server = `https://127.0.0.1:${port}`;
  const apiserver = startProcess(
    'kube-apiserver',
    infraBinary('kube-apiserver'),
    [
      '--etcd-servers',
      etcd.url,
      '--bind-address',
      '127.0.0.1',
      '--advertise-address',
      '127.0.0.1',
      '--secure-port',
      String(port),
      '--tls-cert-file',
      serving.cert,
      '--tls-private-key-file',
      serving.key,
      '--client-ca-file',
      ca.cert,
      '--authorization-mode',
      'RBAC',
      '--service-account-issuer',
      server,
      '--service-account-key-file',
      sa.pub,
      '--service-account-signing-key-file',
      sa.key,
      '--api-audiences',
      'veil',
      '--service-cluster-ip-range',
      '10.0.0.0/24',
      // No controller-manager creates default service accounts here.
      '--disable-admission-plugins',
      'ServiceAccount',
      '--enable-priority-and-fairness=false',
      '--anonymous-auth=true',
    ],
    join(dir, 'kube-apiserver.log'),
  );

  const admin = await issueCert(pki, ca, {
    name: 'admin',
    subject: '/O=system:masters/CN=admin',
    usage: 'client',
  });
  const kubeconfig = join(dir, 'admin.kubeconfig');
  await writeKubeconfig(kubeconfig, server, ca.cert, 'admin', admin);

  const caPem = await readFile(ca.cert, 'utf8');
  const agent = new Agent({ connect: { ca: caPem } });
  await waitFor(
    'kube-apiserver',
    async () => {
      if (apiserver.child.exitCode !== null)
        throw new Error(`kube-apiserver exited; see ${dir}/kube-apiserver.log`);
      const { request } = await import('undici');
      const response = await request(`${server}/readyz`, { dispatcher: agent });
      await response.body.text();
      return response.statusCode === 200;
    },
    120_000,
  );

  return {
    server,
    dir,
    kubeconfig,
    caCert: ca.cert,
    serviceAccountIssuer: server,
    kubeConfig(path = kubeconfig) {
      const kc = new KubeConfig();
      kc.loadFromFile(path);
      return kc;
    },
    async addUser(name, groups = []) {
      const subject = `${groups.map((g) => `/O=${g}`).join('')}/CN=${name}`;
      const cert = await issueCert(pki, ca, { name: `user-${name}`, subject, usage: 'client' });
      const path = join(dir, `${name}.kubeconfig`);
      await writeKubeconfig(path, server, ca.cert, name, cert);
      return { name, groups, kubeconfig: path };
    },
    issueServingCert: (name) =>
      issueCert(pki, ca, {
        name,
        subject: `/CN=${name}`,
        usage: 'server',
        ips: ['127.0.0.1'],
        dnsNames: ['localhost'],
      }),
    dispatcher: () => agent,
    async stop() {
      await agent.close();
      await apiserver.stop();
      await etcd.process.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
