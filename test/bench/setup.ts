// The bench's world, all on loopback: a temporary directory, the demo model
// (child process), a dev OIDC issuer and a real JWT, the policy file, and on
// demand the canned upstream, the sidecars and the bare Node proxy (child
// processes) and nginx. Everything started here is registered for teardown.
import { mkdtemp, readFile, rm, statfs, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { type SidecarConfigInput, startDevIssuer } from '@veil/sidecar';
import type { BareProxyReady } from './bare-proxy.ts';
import { startCannedUpstream } from './canned-upstream.ts';
import { EMITTED_NODE_FLAGS, emitForBench } from './emitted.ts';
import type { Target } from './load.ts';
import type { ModelReady } from './model-process.ts';
import { type Nginx, startNginx } from './nginx.ts';
import { type Child, canPin, findProgram, peakRss, startNodeChild } from './processes.ts';
import type { SidecarLaunch, SidecarReady } from './sidecar-process.ts';
import { onTeardown, trackTempDir } from './teardown.ts';
import { AUDIENCE, benchPolicy, CALLER_GROUP, EMBEDDINGS_PATH, requestBody } from './workload.ts';

export interface CpuLayout {
  readonly cores: number;
  /** The one core of the proxy under test (the sidecar, the bare Node proxy, nginx as a proxy), when it can be pinned. */
  readonly sidecar: string | undefined;
  /** The upstream (model or canned) and the load generators: every other core. */
  readonly others: string | undefined;
}

export function cpuLayout(): CpuLayout {
  const cores = availableParallelism();
  if (!canPin || cores < 2) return { cores, sidecar: undefined, others: undefined };
  const last = cores - 1;
  return { cores, sidecar: String(last), others: last === 1 ? '0' : `0-${last - 1}` };
}

export interface SidecarChild extends Child<SidecarReady> {
  readonly target: Target;
  /** Peak RSS once started and idle, in bytes. */
  readonly startRss: number | undefined;
}

export interface SidecarSettings {
  readonly recording: SidecarLaunch['recording'];
  /** More settings, such as the S3 bucket. */
  readonly config?: Partial<SidecarConfigInput>;
  /** More environment, such as S3 credentials. */
  readonly env?: Record<string, string>;
  /** The age at which the audit shipper cuts a batch at the latest, instead of the example's. */
  readonly batchMaxAgeSeconds?: number;
}

/** What the proxies forward to: the demo model, or the canned answer of scenario B. */
export interface Upstream {
  /** As the report names it: `model` or `canned`. */
  readonly name: string;
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  /** The load sent straight to it, with no proxy in between. */
  readonly direct: Target;
}

export interface CannedUpstream extends Upstream {
  readonly servedBy: string;
  readonly bytes: number;
  readonly dimensions: number;
  stop(): Promise<void>;
}

/** A proxy under test other than the sidecar, in its own process. */
export interface ProxyChild extends Target {
  readonly pid: number;
  stop(): Promise<void>;
}

export interface BareProxyChild extends ProxyChild {
  readonly child: Child<BareProxyReady>;
}

export interface World {
  readonly dir: string;
  readonly cpus: CpuLayout;
  readonly model: Child<ModelReady>;
  /** The demo model as an upstream. */
  readonly upstream: Upstream;
  /** True when the temporary directory is on tmpfs, where fsync costs nothing. */
  readonly tmpfs: boolean;
  startCannedUpstream(): Promise<CannedUpstream>;
  /** A sidecar in front of the model, or of `upstream` when given. */
  startSidecar(name: string, options: SidecarSettings, upstream?: Upstream): Promise<SidecarChild>;
  startNginx(upstream: Upstream): Promise<ProxyChild>;
  startBareProxy(upstream: Upstream): Promise<BareProxyChild>;
}

const TMPFS_MAGIC = 0x01021994;

export async function createWorld(cpus: CpuLayout): Promise<World> {
  const dir = await mkdtemp(join(tmpdir(), 'veil-bench-'));
  trackTempDir(dir);
  onTeardown('remove the temporary directory', () => rm(dir, { recursive: true, force: true }));
  const tmpfs = (await statfs(dir)).type === TMPFS_MAGIC;
  const emitted = await emitForBench(dir);
  const proxyNodeFlags = [...EMITTED_NODE_FLAGS, ...(await imageNodeFlags())];

  const model = await startNodeChild<ModelReady>({
    name: 'demo model',
    script: './model-process.ts',
    cpus: cpus.others,
    logFile: join(dir, 'model.log'),
  });

  const issuer = await startDevIssuer({ host: '127.0.0.1' });
  onTeardown('stop the dev issuer', () => issuer.close());
  const token = await issuer.mint(
    { sub: 'bench-client', aud: AUDIENCE, groups: [CALLER_GROUP] },
    { lifetimeSeconds: 3 * 3600 },
  );
  const policyFile = async (batchMaxAgeSeconds: number | undefined): Promise<string> => {
    const file = join(dir, `policy-${batchMaxAgeSeconds ?? 'example'}.json`);
    await writeFile(file, JSON.stringify(await benchPolicy(issuer.issuer, { batchMaxAgeSeconds })));
    return file;
  };

  const body = requestBody();
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${token}` };
  const target = (name: string, url: string): Target => ({
    name,
    origin: url,
    path: EMBEDDINGS_PATH,
    headers,
    body,
  });
  let sidecars = 0;
  const modelUpstream: Upstream = {
    name: 'model',
    url: model.ready.url,
    port: model.ready.port,
    pid: model.pid,
    direct: target('direct → model', model.ready.url),
  };

  return {
    dir,
    cpus,
    model,
    upstream: modelUpstream,
    tmpfs,
    async startCannedUpstream() {
      const canned = await startCannedUpstream(model.ready.url, dir, cpus.others);
      return { ...canned, name: 'canned', direct: target('direct → canned', canned.url) };
    },
    async startSidecar(name, settings, upstream = modelUpstream) {
      const index = sidecars++;
      const home = join(dir, `sidecar-${index}`);
      const config: SidecarConfigInput = {
        upstream: upstream.url,
        api: 'openai',
        host: '127.0.0.1',
        proxyPort: 0,
        adminHost: '127.0.0.1',
        adminPort: 0,
        bootstrapPolicyFile: await policyFile(settings.batchMaxAgeSeconds),
        stateDir: join(home, 'state'),
        auditDir: join(home, 'audit'),
        pod: { namespace: 'bench', name: `embed-${index}`, uid: `bench-pod-${index}` },
        cluster: 'bench',
        ...settings.config,
      };
      const launch: SidecarLaunch = { config, recording: settings.recording };
      const child = await startNodeChild<SidecarReady>({
        name,
        script: 'sidecar-process.js',
        dir: emitted,
        env: { ...settings.env, VEIL_BENCH_SIDECAR: JSON.stringify(launch) },
        nodeArgs: [
          ...proxyNodeFlags,
          // For profiling the sidecar under load, e.g. "--cpu-prof --cpu-prof-dir=DIR".
          ...(process.env.VEIL_BENCH_SIDECAR_NODE_ARGS ?? '').split(' ').filter(Boolean),
        ],
        cpus: cpus.sidecar,
        logFile: join(dir, `sidecar-${index}.log`),
      });
      return { ...child, target: target(name, child.ready.url), startRss: await peakRss(child.pid) };
    },
    async startNginx(upstream) {
      const bin = findProgram('nginx');
      if (bin === undefined) throw new Error('nginx is not installed');
      // On the sidecar's core, so "nginx → …" and "sidecar → …" are both a proxy on one core.
      const nginx: Nginx = await startNginx(
        bin,
        join(dir, `nginx-${upstream.name}`),
        { kind: 'proxy', upstreamPort: upstream.port },
        cpus.sidecar,
      );
      return { ...target(`nginx → ${upstream.name}`, nginx.url), pid: nginx.pid, stop: nginx.stop };
    },
    async startBareProxy(upstream) {
      const child = await startNodeChild<BareProxyReady>({
        name: 'bare node proxy',
        script: 'bare-proxy.js',
        dir: emitted,
        env: { VEIL_BENCH_UPSTREAM: upstream.url },
        nodeArgs: proxyNodeFlags,
        cpus: cpus.sidecar,
        logFile: join(dir, `bare-proxy-${upstream.name}.log`),
      });
      return {
        ...target(`bare node proxy → ${upstream.name}`, child.ready.url),
        pid: child.pid,
        stop: child.stop,
        child,
      };
    },
  };
}

/**
 * The node flags the sidecar image starts with (its ENTRYPOINT between node and
 * the entry file), so the bench's sidecars size their heap as the image's do.
 */
export async function imageNodeFlags(): Promise<string[]> {
  const dockerfile = await readFile(new URL('../../Dockerfile.sidecar', import.meta.url), 'utf8');
  const entrypoint = /^ENTRYPOINT (\[.*\])$/m.exec(dockerfile)?.[1];
  if (entrypoint === undefined) throw new Error('Dockerfile.sidecar has no ENTRYPOINT in exec form');
  return (JSON.parse(entrypoint) as string[]).slice(1, -1);
}
