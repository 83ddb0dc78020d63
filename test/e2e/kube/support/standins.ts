// Stand-ins for injected pods. No kubelet runs here, so pods are stored, never
// run. Each stand-in is made as honestly as that allows:
//  - the Pod is created through the API, so the real webhook injects it;
//  - its status is then written through the status subresource, as a kubelet
//    would: phase Running and a pod IP. Every stand-in gets an address of its
//    own on the loopback network (127.0.x.y: all of 127/8 is loopback on
//    Linux), so the controller addresses each one exactly as in a cluster,
//    https://<pod IP>:<the veil-admin port the webhook wrote>, with no test hook;
//  - a real sidecar (startSidecar) runs for it with the files a kubelet would
//    mount: the bootstrap policy from the pod's annotation, the controller's
//    public key from wherever the pod's volume sources it (the pod's own
//    annotation; a ConfigMap or Secret for a pod an earlier release injected),
//    written again while the stand-in runs whenever that source changes, as the
//    kubelet's sync does, the Secret
//    volumes the webhook mounted into the sidecar, read from the API when the
//    stand-in starts as the kubelet reads them when the pod does (an optional
//    Secret that does not exist leaves its directory empty), and the pod's
//    projected token for the controller, minted through the TokenRequest API
//    bound to the pod as the kubelet mints it; with it the sidecar pulls its
//    policy and gets its admin-port certificate from the controller;
//  - in front of the sidecar's admin port sits a recording pass-through, which
//    counts each PUT and reads (without trusting) the `sub` of its token:
//    which controller replica pushed. Pushes are TLS, so the front terminates
//    it with a certificate of its own for the pod, which it gets from the
//    controller as the sidecar does (it holds the pod's token, as anything in
//    the pod would), and passes each request on to the sidecar over TLS,
//    checking the sidecar's certificate as the controller does. When the
//    controller's key changes, it gets a certificate from the new one, as the
//    sidecar does.
import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { createServer, request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import {
  CoreV1Api,
  PatchStrategy,
  setHeaderOptions,
  type V1Container,
  type V1Pod,
  type V1Secret,
  type V1Volume,
} from '@kubernetes/client-node';
import { podServerName, pullAudience, sidecarNames, sidecarVolumeNames } from '@veil/injector';
import { type RunningSidecar, sidecarConfigSchema, startSidecar } from '@veil/sidecar';
import { decodeJwt } from 'jose';
import { Agent, request } from 'undici';
import type { ControlPlane } from '../../../harness/index.ts';
import { eventually } from './cluster.ts';
import { modelPod } from './injector.ts';

export type AdminRequest = { method: string; subject: string | undefined };

export type StandIn = {
  name: string;
  uid: string;
  ip: string;
  sidecar: RunningSidecar;
  /** Every request that reached the admin port, in order. */
  admin: AdminRequest[];
  /** What its sidecar logged (also written to stderr). */
  log: string[];
  puts(): AdminRequest[];
  /** Stops its sidecar and starts another on the same files and state, as a container restart does. */
  restart(): Promise<void>;
  close(): Promise<void>;
};

export type StandInOptions = {
  /** Only its client and directory: a process other than the one that started the control plane can pass its own. */
  cp: Pick<ControlPlane, 'dir' | 'kubeConfig'>;
  namespace: string;
  count: number;
  /** The injector settings' adminPort: what the webhook writes as veil-admin. */
  adminPort: number;
  modelUrl: string;
  /** The controller's pull endpoint (an injector's `pull.url`) and the CA file its certificate is checked by. */
  controller: { url: string; caFile: string };
  annotations?: Record<string, string>;
  prefix?: string;
};

let nextAddress = 0;

/** A loopback address no other stand-in of this process uses. */
function loopbackAddress(): string {
  const n = nextAddress++;
  return `127.0.${1 + Math.floor(n / 250)}.${1 + (n % 250)}`;
}

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

export async function startStandIns(options: StandInOptions): Promise<StandIn[]> {
  const { cp, namespace, count } = options;
  const core = cp.kubeConfig().makeApiClient(CoreV1Api);
  const dir = join(cp.dir, `standins-${namespace}`);
  await mkdir(dir, { recursive: true });
  const pods = await Promise.all(
    Array.from({ length: count }, (_, i) =>
      core.createNamespacedPod({
        namespace,
        body: modelPod(`${options.prefix ?? 'embedder'}-${i}`, {
          'veil.dev/inject': 'true',
          ...options.annotations,
        }),
      }),
    ),
  );
  const launched: Launched[] = [];
  try {
    for (const pod of pods) launched.push(await startStandIn(options, core, pod, dir));
  } catch (error) {
    await Promise.all(launched.map((l) => l.standIn.close()));
    throw error;
  }
  const started = launched.map((l) => l.standIn);
  kubeletSync(core, namespace, launched);
  // A sidecar without its certificate yet fails the controller's pushes, which
  // are then retried: waited for, so that tests count deliveries, not retries.
  for (const standIn of started) {
    if (!(await standIn.sidecar.adminCertificate))
      throw new Error(`${standIn.name} got no admin certificate`);
  }
  // The kubelet's part, once the sidecars listen: the pods run, with their IPs.
  await Promise.all(
    started.map((s) =>
      core.patchNamespacedPodStatus(
        {
          namespace,
          name: s.name,
          body: { status: { phase: 'Running', podIP: s.ip, podIPs: [{ ip: s.ip }], hostIP: '127.0.0.1' } },
        },
        mergePatch,
      ),
    ),
  );
  return started;
}

/** A stand-in, and the kubelet's sync of its volumes to the pod as the API server now holds it. */
type Launched = { standIn: StandIn; sync(pod: V1Pod): Promise<void> };

/**
 * The kubelet's periodic sync for a batch of stand-ins: one list of the
 * namespace's pods every few hundred ms, each stand-in's volumes written again
 * from it; stopped once every stand-in of the batch is closed.
 */
function kubeletSync(core: CoreV1Api, namespace: string, launched: readonly Launched[]): void {
  let open = launched.length;
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    core
      .listNamespacedPod({ namespace })
      .then(async ({ items }) => {
        for (const { standIn, sync } of launched) {
          const pod = items.find((p) => p.metadata?.name === standIn.name);
          if (pod !== undefined) await sync(pod);
        }
      })
      .catch((error: Error) => console.error(`stand-ins ${namespace}: volume sync: ${error.message}`))
      .finally(() => {
        running = false;
      });
  }, 250);
  for (const { standIn } of launched) {
    const close = standIn.close;
    standIn.close = async () => {
      open -= 1;
      if (open === 0) clearInterval(timer);
      await close();
    };
  }
}

async function startStandIn(
  options: StandInOptions,
  core: CoreV1Api,
  pod: V1Pod,
  dir: string,
): Promise<Launched> {
  const name = pod.metadata?.name ?? '';
  const uid = pod.metadata?.uid ?? '';
  if (pod.metadata?.labels?.['veil.dev/injected'] !== 'true') throw new Error(`${name} was not injected`);
  const ip = loopbackAddress();
  const podDir = join(dir, name);
  await mkdir(podDir, { recursive: true });
  const bootstrap = pod.metadata?.annotations?.['veil.dev/bootstrap-policy'];
  const bootstrapFile = join(podDir, 'bootstrap.json');
  if (bootstrap !== undefined) await writeFile(bootstrapFile, bootstrap);
  const container = sidecarContainerOf(pod);
  const mountsDir = join(podDir, 'mounts');
  await mountSecretVolumes(core, options.namespace, pod, container, mountsDir);
  const hashKeyPath = container.env?.find((e) => e.name === 'VEIL_HASH_KEY_FILE')?.value;
  const keyPath = container.env?.find((e) => e.name === 'VEIL_CONTROLLER_KEY_FILE')?.value ?? '';
  const trust = await syncedVolume(
    core,
    options.namespace,
    pod,
    container,
    sidecarVolumeNames.controllerKey,
    mountsDir,
  );
  const keyFile = join(mountsDir, keyPath);
  const tokenFile = join(podDir, 'controller-token');
  await writeFile(tokenFile, await podToken(core, options.namespace, pod));
  const log: string[] = [];
  // The pod's port first: the sidecar's own ports are picked by the kernel and
  // must not take it.
  const admin: AdminRequest[] = [];
  const target: { url?: URL } = {};
  const front = await recordingFront(ip, options.adminPort, target, admin, {
    ...options.controller,
    tokenFile,
    uid,
  });
  const launch = () =>
    startSidecar(
      sidecarConfigSchema.parse({
        upstream: options.modelUrl,
        api: 'openai',
        host: ip,
        proxyPort: 0,
        adminHost: ip,
        adminPort: 0,
        policyName: pod.metadata?.annotations?.['veil.dev/policy'] ?? 'default',
        bootstrapPolicyFile: bootstrap === undefined ? undefined : bootstrapFile,
        stateDir: join(podDir, 'state'),
        auditDir: join(podDir, 'audit'),
        controllerKeyFile: keyFile,
        controllerUrl: options.controller.url,
        controllerTokenFile: tokenFile,
        controllerCaFile: options.controller.caFile,
        hashKeyFile: hashKeyPath === undefined ? undefined : join(mountsDir, hashKeyPath),
        pod: { namespace: options.namespace, name, uid },
        cluster: 'e2e',
        auditCloseGraceSeconds: 0,
      }),
      {
        // The pod may reach the controller's cache a moment after the sidecar first asks.
        pullBackoff: { baseMs: 50, capMs: 1_000 },
        log: (message) => {
          log.push(message);
          console.error(`veil-sidecar ${name}: ${message}`);
        },
      },
    );
  let sidecar: RunningSidecar;
  try {
    sidecar = await launch();
  } catch (error) {
    front.server.close();
    throw error;
  }
  target.url = new URL(sidecar.adminUrl);
  const standIn: StandIn = {
    name,
    uid,
    ip,
    sidecar,
    admin,
    log,
    puts: () => admin.filter((r) => r.method === 'PUT'),
    async restart() {
      target.url = undefined;
      await standIn.sidecar.close();
      standIn.sidecar = await launch();
      target.url = new URL(standIn.sidecar.adminUrl);
    },
    async close() {
      front.server.closeAllConnections();
      front.server.close();
      await standIn.sidecar.close();
    },
  };
  return {
    standIn,
    async sync(now) {
      // A new controller key: a certificate from it, as the sidecar gets one.
      if (await trust.sync(now)) await front.renew();
    },
  };
}

function sidecarContainerOf(pod: V1Pod): V1Container {
  const containers = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])];
  const container = containers.find((c) => c.name === sidecarNames.container);
  if (container === undefined) throw new Error(`${pod.metadata?.name} has no ${sidecarNames.container}`);
  return container;
}

/**
 * The kubelet's part for the sidecar's Secret volumes, each at its mount path under
 * `root`: the items of the Secret as it stands now. An optional Secret that does not
 * exist, or lacks an item, leaves the file out; a required one fails, as the pod
 * would not start.
 */
async function mountSecretVolumes(
  core: CoreV1Api,
  namespace: string,
  pod: V1Pod,
  container: V1Container,
  root: string,
): Promise<void> {
  for (const mount of container.volumeMounts ?? []) {
    const source = pod.spec?.volumes?.find((v) => v.name === mount.name)?.secret;
    if (source === undefined) continue;
    const target = join(root, mount.mountPath);
    await mkdir(target, { recursive: true });
    const optional = source.optional === true;
    const secret = await readSecret(core, namespace, source.secretName ?? '');
    if (secret === undefined) {
      if (optional) continue;
      throw new Error(`${pod.metadata?.name}: Secret ${source.secretName} not found`);
    }
    const data = secret.data ?? {};
    const items = source.items ?? Object.keys(data).map((key) => ({ key, path: key }));
    for (const item of items) {
      const value = data[item.key];
      if (value === undefined) {
        if (optional) continue;
        throw new Error(`${pod.metadata?.name}: Secret ${source.secretName} has no key ${item.key}`);
      }
      await writeFile(join(target, item.path), Buffer.from(value, 'base64'), { mode: 0o600 });
    }
  }
}

async function readSecret(core: CoreV1Api, namespace: string, name: string): Promise<V1Secret | undefined> {
  try {
    return await core.readNamespacedSecret({ namespace, name });
  } catch (error) {
    if ((error as { code?: number }).code === 404) return undefined;
    throw error;
  }
}

/**
 * The kubelet's part for the projected token the injector mounts for the
 * controller: one bound to the pod, so the API server names the pod when the
 * controller reviews it. The test API server has no controller-manager to make
 * the pod's service account, so it is made here.
 */
async function podToken(core: CoreV1Api, namespace: string, pod: V1Pod): Promise<string> {
  const account = pod.spec?.serviceAccountName ?? 'default';
  try {
    await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: account } } });
  } catch (error) {
    if ((error as { code?: number }).code !== 409) throw error;
  }
  const { status } = await core.createNamespacedServiceAccountToken({
    namespace,
    name: account,
    body: {
      spec: {
        audiences: [pullAudience],
        expirationSeconds: 3600,
        boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: pod.metadata?.name, uid: pod.metadata?.uid },
      },
    },
  });
  if (!status?.token) throw new Error(`no token for ${pod.metadata?.name}`);
  return status.token;
}

type FrontIdentity = { url: string; caFile: string; tokenFile: string; uid: string };

/** A certificate for the pod's admin port from the controller, and the CA it trusts admin ports by. */
async function podCertificate(identity: FrontIdentity): Promise<{ key: string; cert: string; ca: string }> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const agent = new Agent({ connect: { ca: await readFile(identity.caFile, 'utf8') } });
  try {
    const token = await readFile(identity.tokenFile, 'utf8');
    return await eventually(`a certificate for pod ${identity.uid}`, async () => {
      const response = await request(`${identity.url}/v1/certificates`, {
        method: 'POST',
        dispatcher: agent,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ publicKey: publicKey.export({ type: 'spki', format: 'pem' }) }),
      });
      const body = (await response.body.json()) as { certificate?: string; ca?: string };
      if (response.statusCode !== 200 || !body.certificate || !body.ca) return undefined;
      return {
        key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
        cert: body.certificate,
        ca: body.ca,
      };
    });
  } finally {
    await agent.close();
  }
}

async function recordingFront(
  host: string,
  port: number,
  target: { url?: URL },
  log: AdminRequest[],
  identity: FrontIdentity,
) {
  let current = await podCertificate(identity);
  const servername = podServerName(identity.uid);
  const server = createServer({ key: current.key, cert: current.cert }, (request, response) => {
    const token = /^Bearer (.+)$/i.exec(request.headers.authorization ?? '')?.[1];
    log.push({ method: request.method ?? '', subject: token ? subjectOf(token) : undefined });
    // Like a sidecar still starting: nothing listens yet.
    if (target.url === undefined) return request.socket.destroy();
    const upstream = httpsRequest(
      {
        host: target.url.hostname,
        port: target.url.port,
        path: request.url,
        method: request.method,
        headers: request.headers,
        ca: current.ca,
        servername,
      },
      (answer) => {
        response.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(response);
      },
    );
    upstream.on('error', () => {
      response.writeHead(502).end();
    });
    request.pipe(upstream);
  });
  server.listen(port, host);
  await once(server, 'listening');
  if ((server.address() as AddressInfo).port !== port) throw new Error('front on the wrong port');
  return {
    server,
    /** A certificate from the controller as it is now, and the CA it now certifies sidecars by. */
    async renew() {
      current = await podCertificate(identity);
      server.setSecureContext({ key: current.key, cert: current.cert });
    },
  };
}

/**
 * The kubelet's part for one of the sidecar's volumes, at its mount path under
 * `root`: its files from what the pod spec sources them from, the pod's own
 * annotations (downwardAPI) or ConfigMaps and Secrets of its namespace
 * (projected). `sync(now)`, given the pod as the API server holds it now,
 * writes them again when a source changed, each file
 * replaced whole as the kubelet's atomic writer does, and says whether one did.
 */
async function syncedVolume(
  core: CoreV1Api,
  namespace: string,
  pod: V1Pod,
  container: V1Container,
  volumeName: string,
  root: string,
): Promise<{ sync(now: V1Pod): Promise<boolean> }> {
  const volume = pod.spec?.volumes?.find((v) => v.name === volumeName);
  const mount = container.volumeMounts?.find((m) => m.name === volumeName);
  if (volume === undefined || mount === undefined)
    throw new Error(`${pod.metadata?.name} has no ${volumeName}`);
  const target = join(root, mount.mountPath);
  await mkdir(target, { recursive: true });
  const written = new Map<string, string>();
  const sync = async (now: V1Pod): Promise<boolean> => {
    let changed = false;
    for (const [path, content] of await volumeFiles(core, namespace, now, volume)) {
      if (written.get(path) === content) continue;
      const file = join(target, path);
      await writeFile(`${file}.tmp`, content);
      await rename(`${file}.tmp`, file);
      changed = written.has(path) || changed;
      written.set(path, content);
    }
    return changed;
  };
  await sync(pod);
  return { sync };
}

async function volumeFiles(
  core: CoreV1Api,
  namespace: string,
  pod: V1Pod,
  volume: V1Volume,
): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  if (volume.downwardAPI !== undefined) {
    for (const item of volume.downwardAPI.items ?? []) {
      const annotation = /^metadata\.annotations\['(.+)'\]$/.exec(item.fieldRef?.fieldPath ?? '')?.[1];
      if (annotation === undefined)
        throw new Error(`unsupported downwardAPI item ${item.fieldRef?.fieldPath}`);
      // An annotation the pod lacks is an empty file, as the kubelet writes it.
      files.set(item.path, pod.metadata?.annotations?.[annotation] ?? '');
    }
  }
  for (const source of volume.projected?.sources ?? []) {
    const from = source.configMap ?? source.secret;
    if (from === undefined) continue;
    const data =
      source.configMap !== undefined
        ? (await readConfigMap(core, namespace, source.configMap.name ?? ''))?.data
        : decoded((await readSecret(core, namespace, source.secret?.name ?? ''))?.data);
    for (const item of from.items ?? []) {
      const value = data?.[item.key];
      if (value === undefined && from.optional !== true)
        throw new Error(`${pod.metadata?.name}: ${item.key} of a required source is missing`);
      if (value !== undefined) files.set(item.path, value);
    }
  }
  return files;
}

async function readConfigMap(core: CoreV1Api, namespace: string, name: string) {
  try {
    return await core.readNamespacedConfigMap({ namespace, name });
  } catch (error) {
    if ((error as { code?: number }).code === 404) return undefined;
    throw error;
  }
}

function decoded(data: Record<string, string> | undefined): Record<string, string> | undefined {
  if (data === undefined) return undefined;
  return Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()]));
}

function subjectOf(token: string): string | undefined {
  try {
    return decodeJwt(token).sub;
  } catch {
    return undefined;
  }
}

/** Polls every stand-in's GET /v1/policy until each enforces `hash`. */
export async function waitForHash(
  standIns: readonly StandIn[],
  hash: string,
  timeoutMs = 30_000,
): Promise<void> {
  const pending = new Set(standIns);
  await eventually(
    `every sidecar enforcing ${hash}`,
    async () => {
      await Promise.all(
        [...pending].map(async (s) => {
          const response = await fetch(`${s.sidecar.adminUrl}/v1/policy`);
          const body = (await response.json()) as { hash?: string };
          if (body.hash === hash) pending.delete(s);
        }),
      );
      return pending.size === 0 ? true : undefined;
    },
    timeoutMs,
    20,
  );
}
