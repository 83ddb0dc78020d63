// The images: what the Dockerfiles copy and run (no Docker engine runs here, so
// they are read, not built), and the sidecar's entry point run the way the image
// runs it, with the environment the injector writes into a pod.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { generateControllerJwk, inject, injectionSettingsSchema } from '@veil/injector';
import { startDemoModel } from '@veil/sidecar';
import { freePort } from '../../harness/index.ts';
import { chartDir, parseManifests, repoRoot } from './support.ts';

type Dockerfile = {
  text: string;
  entrypoint: string[];
  copies: string[];
  user: string | undefined;
  npmCi: string;
};

async function readDockerfile(name: string): Promise<Dockerfile> {
  const text = await readFile(join(repoRoot, name), 'utf8');
  const lines = text.split('\n').map((line) => line.trim());
  const entry = lines.filter((line) => line.startsWith('ENTRYPOINT '));
  assert.equal(entry.length, 1, `${name} has one ENTRYPOINT`);
  return {
    text,
    entrypoint: JSON.parse((entry[0] as string).slice('ENTRYPOINT '.length)) as string[],
    copies: lines
      .filter((l) => l.startsWith('COPY ') && !l.includes('--from='))
      .flatMap((l) => l.split(/\s+/).slice(1, -1)),
    user: lines.findLast((l) => l.startsWith('USER '))?.slice('USER '.length),
    npmCi: lines.find((l) => l.startsWith('RUN npm ci')) ?? '',
  };
}

type PackageJson = { name: string; dependencies?: Record<string, string> };

async function workspaces(): Promise<Map<string, { dir: string; manifest: PackageJson }>> {
  const found = new Map<string, { dir: string; manifest: PackageJson }>();
  for (const dir of await readdir(join(repoRoot, 'packages'))) {
    const manifest = JSON.parse(
      await readFile(join(repoRoot, 'packages', dir, 'package.json'), 'utf8'),
    ) as PackageJson;
    found.set(manifest.name, { dir: `packages/${dir}`, manifest });
  }
  return found;
}

describe('Dockerfiles', () => {
  for (const [file, workspace] of [
    ['Dockerfile.sidecar', '@veil/sidecar'],
    ['Dockerfile.injector', '@veil/injector'],
  ] as const) {
    test(`${file}: installs ${workspace} without dev dependencies, copies what it imports, runs as 65532`, async () => {
      const docker = await readDockerfile(file);
      const packages = await workspaces();
      const own = packages.get(workspace);
      assert.ok(own);

      assert.match(docker.npmCi, new RegExp(`--workspace ${workspace}(\\s|$)`));
      assert.match(docker.npmCi, /--omit=dev/);
      assert.equal(docker.user, '65532:65532');
      // The lockfile and every workspace manifest, so `npm ci` finds them in sync.
      assert.ok(docker.copies.includes('package-lock.json'));
      for (const { dir } of packages.values()) assert.ok(docker.copies.includes(`${dir}/package.json`), dir);
      // The sources of the workspace and of every workspace it depends on, and no others.
      const needed = new Set<string>();
      const visit = (name: string) => {
        const found = packages.get(name);
        if (!found || needed.has(found.dir)) return;
        needed.add(found.dir);
        for (const dependency of Object.keys(found.manifest.dependencies ?? {})) visit(dependency);
      };
      visit(workspace);
      const sources = docker.copies.filter((c) => c.endsWith('/src'));
      assert.deepEqual(sources.sort(), [...needed].map((dir) => `${dir}/src`).sort());

      // The entry point, after node's own flags, is the workspace's main.ts, and it
      // exists; or the JavaScript the build stage emits from it, for this workspace
      // and every one it imports.
      const entry = docker.entrypoint.at(-1);
      for (const flag of docker.entrypoint.slice(1, -1)) assert.match(flag, /^--[a-z-]+(=\S+)?$/);
      await readFile(join(repoRoot, own.dir, 'src', 'main.ts'));
      if (entry === `${own.dir}/src/main.js`) {
        const emitted = docker.text
          .match(/^RUN node scripts\/emit-js\.ts ([^&\n]+)/m)?.[1]
          ?.trim()
          .split(/\s+/);
        assert.deepEqual(emitted?.sort(), [...needed].sort());
      } else {
        assert.equal(entry, `${own.dir}/src/main.ts`);
      }
    });
  }

  test('.dockerignore keeps the sources and manifests in the build context', async () => {
    const ignored = (await readFile(join(repoRoot, '.dockerignore'), 'utf8'))
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    for (const pattern of ['packages', 'packages/*', 'packages/*/src', '*.json', 'package-lock.json']) {
      assert.ok(!ignored.includes(pattern), `.dockerignore must not exclude ${pattern}`);
    }
    assert.ok(ignored.includes('**/node_modules'), 'node_modules stay out: the image installs its own');
    // What a Dockerfile copies from an otherwise ignored folder is let back in.
    const sidecar = await readDockerfile('Dockerfile.sidecar');
    for (const copied of sidecar.copies.filter((c) => c.startsWith('scripts/'))) {
      assert.ok(ignored.includes(`!${copied}`), `.dockerignore must let ${copied} in`);
    }
  });

  test('the signing-key hook runs the injector image with the same node', async () => {
    const docker = await readDockerfile('Dockerfile.injector');
    const { stdout } = await (await import('./support.ts')).helm(['template', 'veil', chartDir]);
    const job = parseManifests(stdout).find((o) => o.kind === 'Job');
    const container = job?.spec.template.spec.containers[0];
    assert.equal(container.command[0], docker.entrypoint[0]);
    assert.equal(container.image, 'veil-injector:0.1.0');
  });
});

describe('the sidecar entry point', () => {
  let dir: string;
  let model: Awaited<ReturnType<typeof startDemoModel>>;
  const children: ChildProcess[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'veil-entry-'));
    model = await startDemoModel();
  });
  after(async () => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    await model?.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** The sidecar's environment as the injector writes it, with its mount paths moved under `dir`. */
  async function injectedEnv(proxyPort: number, adminPort: number): Promise<Record<string, string>> {
    const settings = injectionSettingsSchema.parse({
      sidecarImage: 'veil-sidecar:0.1.0',
      sidecarVersion: '0.1.0',
      injectorNamespace: 'veil-system',
      controllerUrl: 'https://veil-injector.veil-system.svc:8444',
      cluster: 'kind',
      proxyPort,
      adminPort,
    });
    const policy = { name: 'default', spec: { access: { rules: [{ name: 'all', groups: ['everyone'] }] } } };
    const { d: _private, ...publicJwk } = await generateControllerJwk();
    const result = inject({
      pod: {
        metadata: { name: 'embedder-0', namespace: 'ml', annotations: { 'veil.dev/inject': 'true' } },
        spec: {
          containers: [{ name: 'model', image: 'x', ports: [{ name: 'http', containerPort: model.port }] }],
        },
      },
      namespace: 'ml',
      namespaceOptIn: false,
      settings,
      bootstrapPolicy: policy,
      trust: { publicJwk, caBundle: undefined },
    });
    assert.equal(result.outcome, 'injected');
    const container = result.outcome === 'injected' ? result.pod.spec?.initContainers?.[0] : undefined;
    const fields: Record<string, string> = {
      'metadata.name': 'embedder-0',
      'metadata.namespace': 'ml',
      'metadata.uid': '7c1f0b8e-0000-4000-8000-000000000001',
    };
    const env: Record<string, string> = {};
    for (const variable of container?.env ?? []) {
      const value = variable.value ?? fields[variable.valueFrom?.fieldRef?.fieldPath ?? ''];
      assert.ok(value !== undefined, `${variable.name} has a value or a known field`);
      // Absolute mount paths of the pod, under the test's own directory.
      env[variable.name] = value.startsWith('/') ? join(dir, value) : value;
    }
    for (const mount of container?.volumeMounts ?? [])
      await mkdir(join(dir, mount.mountPath), { recursive: true });
    // What the kubelet would project: the bootstrap policy and the controller's public key.
    await writeFile(env.VEIL_BOOTSTRAP_POLICY_FILE as string, JSON.stringify(policy));
    await writeFile(env.VEIL_CONTROLLER_KEY_FILE as string, JSON.stringify(publicJwk));
    return env;
  }

  async function start(env: Record<string, string>): Promise<{ child: ChildProcess; output: () => string }> {
    // As the image runs it: node with the image's flags, the entry file (the
    // sources the image's JavaScript is emitted from), from the sources' root.
    const flags = (await readDockerfile('Dockerfile.sidecar')).entrypoint.slice(1, -1);
    const child = spawn(process.execPath, [...flags, 'packages/sidecar/src/main.ts'], {
      cwd: repoRoot,
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let output = '';
    child.stdout?.on('data', (chunk) => (output += chunk));
    child.stderr?.on('data', (chunk) => (output += chunk));
    return { child, output: () => output };
  }

  test('starts from the injected environment, serves with the bootstrap policy, and exits 0 on SIGTERM', async () => {
    const [proxyPort, adminPort] = [await freePort(), await freePort()];
    const env = await injectedEnv(proxyPort, adminPort);
    const { child, output } = await start(env);
    const exited = once(child, 'exit');

    const deadline = Date.now() + 30_000;
    let ready: { status: string; policy?: { name: string } } | undefined;
    while (Date.now() < deadline && child.exitCode === null) {
      try {
        const response = await fetch(`http://127.0.0.1:${adminPort}/readyz`);
        if (response.ok) {
          ready = (await response.json()) as typeof ready;
          break;
        }
      } catch {}
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    assert.equal(ready?.status, 'ready', output());
    assert.equal(ready?.policy?.name, 'default');
    // No hash-key Secret in the namespace: the mount is empty, and the sidecar serves on a
    // key of its own, saying so once.
    assert.equal(output().match(/no shared hash key at \S+hash\.key/g)?.length, 1, output());
    assert.match(
      await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text(),
      /^veil_shared_hash_key(\{[^}]*\})? 0$/m,
    );

    // A caller without a token: refused in the OpenAI dialect, and recorded.
    const refused = await fetch(`http://127.0.0.1:${proxyPort}/v1/embeddings`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'demo', input: ['hello'] }),
    });
    assert.equal(refused.status, 401);
    const body = (await refused.json()) as { error?: { message?: string } };
    assert.ok(body.error?.message, 'an OpenAI-style error body');

    child.kill('SIGTERM');
    const [code] = await exited;
    assert.equal(code, 0, output());
    assert.match(output(), /SIGTERM, closing/);
    assert.match(output(), /veil-sidecar: closed/);
    // No bucket: the evidence stays on the pod's state volume, never in the working directory.
    const evidence = await readdir(join(env.VEIL_STATE_DIR as string, 'evidence'), { recursive: true });
    assert.ok(evidence.length > 0, 'evidence was written under the state directory');
  });

  test('exits 1 with the problem named when the environment is incomplete', async () => {
    const { child, output } = await start({ VEIL_PROXY_PORT: '0', VEIL_ADMIN_PORT: '0' });
    const [code] = await once(child, 'exit');
    assert.equal(code, 1);
    assert.match(output(), /veil-sidecar: invalid sidecar configuration: VEIL_UPSTREAM \(upstream\)/);
  });
});
