import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  createDevKeyring,
  SpoolInUseError,
  signWithDevKey,
  startDemoModel,
  startDevIssuer,
  startSidecar,
} from '@veil/sidecar';
import { CliError, type Command, parseOptions } from '../command.ts';
import { DevApprovals } from '../dev/approvals.ts';
import { APPROVALS_AUDIENCE, startDevApprovalsApi } from '../dev/approvalsapi.ts';
import { type DevInfo, openDevState, readDevInfo, writeDevInfo } from '../dev/state.ts';
import { loadPolicyFile } from '../policy/load.ts';

const AUDIENCE = 'veil';
const DEFAULT_POLICY = 'examples/policy.yaml';

/** The example policy next to the sources, for a `veil dev` started outside the repository root. */
function defaultPolicyFile(): string {
  if (existsSync(DEFAULT_POLICY)) return DEFAULT_POLICY;
  return join(import.meta.dirname, '..', '..', '..', '..', DEFAULT_POLICY);
}

/** Digits only, at most `max`: Number() alone takes '', ' 7', 1e4 and 0x4728. Undefined otherwise. */
function wholeNumber(value: string, max: number): number | undefined {
  if (!/^\d{1,9}$/.test(value)) return undefined;
  const number = Number(value);
  return number <= max ? number : undefined;
}

/** 0 picks a free port. */
function port(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const number = wholeNumber(value, 65_535);
  if (number === undefined) throw new CliError(`dev: --${name} must be a port number, not "${value}"`);
  return number;
}

const maxLifetime = 7 * 86_400;

function lifetimeSeconds(value: string): number {
  const seconds = wholeNumber(value, maxLifetime);
  if (seconds === undefined || seconds < 1) {
    throw new CliError(`dev token: --lifetime is whole seconds, 1 to ${maxLifetime}`);
  }
  return seconds;
}

/** Checked before anything starts, so the user reads the flag, not the URL parser's "Invalid URL". */
function upstreamUrl(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const url = URL.parse(value);
  if (url === null || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw new CliError(`dev: --upstream must be an http(s) URL, not "${value}"`);
  }
  // The proxy forwards each caller's own path (/v1/embeddings, /embed…) to the model's origin.
  if (url.pathname !== '/' || url.search !== '' || url.hash !== '') {
    throw new CliError(
      `dev: --upstream is the model's origin (http://host:port), without a path: not "${value}"`,
    );
  }
  return value;
}

/**
 * A listen refused because the port is taken, as the flag that sets it: the
 * user's next step. Undefined for any other error.
 */
function portInUse(error: unknown, ports: Record<string, number>): CliError | undefined {
  const { code, port } = (error ?? {}) as { code?: unknown; port?: unknown };
  if (code !== 'EADDRINUSE') return undefined;
  const flags = Object.entries(ports)
    .filter(([, value]) => value === port)
    .map(([flag]) => `--${flag}`);
  const which = flags.length === 0 ? 'the port flags' : flags.join(' or ');
  return new CliError(
    `dev: port ${String(port)} is already in use (another veil dev?); stop what listens there or choose another port with ${which}`,
    1,
  );
}

export interface DevOptions {
  /** Ports; 0 picks a free one. Defaults 8080, 8081, 8082 and 8083. */
  readonly port?: number;
  readonly adminPort?: number;
  readonly issuerPort?: number;
  readonly approvalsPort?: number;
  /** Your model; the demo model when unset. */
  readonly upstream?: string;
  readonly api?: 'openai' | 'tei' | 'ollama' | 'cohere' | 'auto';
  readonly policyFile?: string;
  /** Where keys, dev.json and evidence go (default .veil). */
  readonly stateDir?: string;
  /** Approvals opened and decided, one line each; silent when unset. */
  readonly log?: (line: string) => void;
}

export interface RunningDev {
  readonly info: DevInfo;
  readonly stateDir: string;
  readonly auditDir: string;
  readonly policyFile: string;
  readonly policyHash: string;
  readonly model: string;
  /** For sub=alice, groups=[ml-readers], valid 12 hours. */
  readonly token: string;
  close(): Promise<void>;
}

/** The dev sidecar's pod namespace; approvals are opened there. */
const DEV_NAMESPACE = 'local';

/**
 * Starts everything `veil dev` runs and writes ./.veil/dev.json; close() stops it
 * all. What started before a failure is stopped again.
 */
export async function startDev(options: DevOptions = {}): Promise<RunningDev> {
  const policyFile = options.policyFile ?? defaultPolicyFile();
  const loaded = await loadPolicyFile(policyFile);
  if (!loaded.ok) {
    for (const problem of loaded.problems)
      console.error(`${policyFile}: ${problem.path}: ${problem.message}`);
    throw new CliError(`dev: ${policyFile} is not a valid EmbeddingPolicy`, 1);
  }
  const state = await openDevState(options.stateDir ?? '.veil');
  const ports = {
    port: options.port ?? 8080,
    'admin-port': options.adminPort ?? 8081,
    'issuer-port': options.issuerPort ?? 8082,
    'approvals-port': options.approvalsPort ?? 8083,
  };
  const stops: (() => Promise<void>)[] = [];
  const close = async () => {
    for (const stop of stops.splice(0).reverse()) await stop();
  };
  try {
    const issuer = await startDevIssuer({
      port: ports['issuer-port'],
      keyring: await createDevKeyring('ES256', { signingKey: state.issuerKey }),
    });
    stops.push(() => issuer.close());
    const model = options.upstream ? undefined : await startDemoModel();
    if (model) stops.push(() => model.close());
    const spec = loaded.policy.spec;
    spec.authentication.oidc.push({
      issuer: issuer.issuer,
      audiences: [AUDIENCE],
      groupsClaim: 'groups',
      algorithms: ['ES256'],
    });
    const policyName = loaded.policy.metadata.name;
    const approvals = new DevApprovals({
      namespace: DEV_NAMESPACE,
      policyName,
      rules: spec.approvals.rules,
      maxPendingPerCaller: spec.approvals.maxPendingPerCaller,
      log: options.log,
    });
    stops.push(() => approvals.close());
    const approvalsApi = await startDevApprovalsApi({
      approvals,
      issuer: issuer.issuer,
      issuerKey: state.issuerKey,
      port: ports['approvals-port'],
    });
    stops.push(() => approvalsApi.close());
    const sidecar = await startSidecar(
      {
        upstream: options.upstream ?? (model?.url as string),
        api: options.api ?? 'auto',
        host: '127.0.0.1',
        proxyPort: ports.port,
        adminHost: '127.0.0.1',
        adminPort: ports['admin-port'],
        policyName,
        auditDir: state.auditDir,
        hashKeyFile: state.hashKeyFile,
        defaultModel: 'default',
        pod: { namespace: DEV_NAMESPACE, name: 'veil-dev', uid: 'local' },
        cluster: 'local',
      },
      { approvals },
    );
    // Held callers are released (503) before the proxy waits for its requests to end.
    stops.push(async () => {
      await approvals.close();
      await sidecar.close();
    });
    const applied = await sidecar.store.apply(policyName, spec);
    if (!applied.ok) throw new CliError(`dev: the policy was refused: ${applied.reason}`, 1);
    const info: DevInfo = {
      issuer: issuer.issuer,
      url: sidecar.url,
      adminUrl: sidecar.adminUrl,
      audience: AUDIENCE,
      approvals: { url: approvalsApi.url, audience: APPROVALS_AUDIENCE, namespace: DEV_NAMESPACE },
    };
    await writeDevInfo(state.dir, info);
    const token = await issuer.mint(
      { sub: 'alice', aud: AUDIENCE, groups: ['ml-readers'] },
      { lifetimeSeconds: 12 * 3600 },
    );
    return {
      info,
      stateDir: state.dir,
      auditDir: state.auditDir,
      policyFile,
      policyHash: applied.hash,
      model: model?.url ?? options.upstream ?? '',
      token,
      close,
    };
  } catch (error) {
    await close();
    throw portInUse(error, ports) ?? stateInUse(error, state.dir) ?? error;
  }
}

/** Two veil dev in one folder would share one audit spool: the second is refused, with the way out. */
function stateInUse(error: unknown, stateDir: string): CliError | undefined {
  if (!(error instanceof SpoolInUseError)) return undefined;
  return new CliError(
    `dev: ${stateDir} is in use by another veil dev; stop it, or give this one a folder of its own with --state`,
    1,
  );
}

export const devCommand: Command = {
  summary: 'run the proxy locally with a demo model, a token issuer, approvals and local evidence',
  help: `Usage: veil dev [options]

Runs Veil's sidecar on localhost in front of a demo embedding model (or your
own with --upstream), with a local OIDC token issuer, enforcing a policy file.
Requests an approval rule holds wait for decisions made with
\`veil approvals … --dev\` against a local approvals API. Prints a ready bearer
token and example calls. Keys, tokens' issuer and the audit trail live in
./.veil/. Stop with Ctrl-C.
Exits 0 once stopped; 1 if it cannot start (an invalid policy, a port in use,
a state folder in use, unreadable or not a folder); 2 on a usage error.

Options:
  --port N            proxy port (default 8080)
  --admin-port N      admin port: /healthz, /readyz, /metrics (default 8081)
  --issuer-port N     local token issuer port (default 8082)
  --approvals-port N  local approvals API port (default 8083)
  --upstream URL      your model, e.g. http://127.0.0.1:11434 (default: the demo model)
  --api NAME          openai | tei | ollama | cohere | auto (default auto: by path)
  --policy FILE       EmbeddingPolicy to enforce (default ${DEFAULT_POLICY})
  --state DIR         where keys and evidence go (default .veil)

Mint more tokens from another terminal, in the same folder:
  npx veil dev token --sub bob --groups ml-readers
  npx veil dev token --approver --sub bob --groups ml-approvers   (for veil approvals --dev)`,
  async run(args) {
    const { values } = parseOptions('dev', args, {
      port: { type: 'string' },
      'admin-port': { type: 'string' },
      'issuer-port': { type: 'string' },
      'approvals-port': { type: 'string' },
      upstream: { type: 'string' },
      api: { type: 'string' },
      policy: { type: 'string' },
      state: { type: 'string' },
    });
    const api = values.api ?? 'auto';
    if (!['openai', 'tei', 'ollama', 'cohere', 'auto'].includes(api)) {
      throw new CliError(`dev: --api must be openai, tei, ollama, cohere or auto, not "${api}"`);
    }
    const dev = await startDev({
      port: port(values.port, 'port', 8080),
      adminPort: port(values['admin-port'], 'admin-port', 8081),
      issuerPort: port(values['issuer-port'], 'issuer-port', 8082),
      approvalsPort: port(values['approvals-port'], 'approvals-port', 8083),
      upstream: upstreamUrl(values.upstream),
      api: api as DevOptions['api'],
      policyFile: values.policy,
      stateDir: values.state,
      log: (line) => console.log(`veil dev: ${line}`),
    });
    console.log(devBanner(dev));

    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    console.log('\nveil dev: shutting down…');
    await dev.close();
    console.log('veil dev: stopped; evidence kept in', dev.auditDir);
    return 0;
  },
};

/**
 * What `veil dev` prints once it runs. Its commands are `npx veil`: a fresh
 * checkout has no `veil` on PATH. The policy hash is of the spec with veil
 * dev's issuer added, so it is not the one `veil policy lint` prints.
 */
export function devBanner(dev: Omit<RunningDev, 'close'>): string {
  const state = stateOption(dev.stateDir);
  return `veil dev is running

  proxy     ${dev.info.url}   (OpenAI, TEI, Ollama and Cohere embedding routes)
  admin     ${dev.info.adminUrl}   (/healthz /readyz /metrics)
  approvals ${dev.info.approvals?.url ?? ''}   (npx veil approvals list --dev${state})
  model     ${dev.model}
  policy    ${dev.policyFile}  ${dev.policyHash} (with veil dev's issuer added)
  evidence  ${dev.auditDir}

A token for sub=alice, groups=[ml-readers], valid 12 hours:

export VEIL_TOKEN=${dev.token}

Try it:

  curl -s ${dev.info.url}/v1/embeddings -H "Authorization: Bearer $VEIL_TOKEN" \\
    -H 'content-type: application/json' \\
    -d '{"model":"demo","input":["mail me at jane@example.com"]}'

More tokens:  npx veil dev token${state} --sub bob --groups ml-readers
Approvers:    export VEIL_APPROVER_TOKEN=$(npx veil dev token${state} --approver --sub bob --groups ml-approvers)
              npx veil approvals list --dev${state} --pending   (docs/approvals.md, "Under veil dev")
Stop:         Ctrl-C`;
}

/** What the banner's commands need to reach this veil dev from here: nothing for the default folder. */
function stateOption(stateDir: string): string {
  if (stateDir === resolve('.veil')) return '';
  const word = /^[\w@%+=:,./-]+$/.test(stateDir) ? stateDir : `'${stateDir.replaceAll("'", `'\\''`)}'`;
  return ` --state ${word}`;
}

export interface DevTokenRequest {
  readonly sub: string;
  readonly groups: readonly string[];
  /** For the local approvals API instead of the proxy. */
  readonly approver?: boolean;
  /** Seconds; default 3600. */
  readonly lifetime?: number;
  /** Default .veil. */
  readonly stateDir?: string;
}

/** A token any `veil dev` run on `stateDir` accepts, signed with the issuer key kept there. */
export async function mintDevToken(request: DevTokenRequest): Promise<string> {
  const { info, issuerKey } = await readDevInfo(request.stateDir ?? '.veil');
  if (request.approver && info.approvals === undefined) {
    throw new CliError('dev token: this veil dev has no approvals API; restart it with this version of veil');
  }
  const now = Math.floor(Date.now() / 1000);
  return signWithDevKey(issuerKey, {
    iss: info.issuer,
    sub: request.sub,
    aud: request.approver ? info.approvals?.audience : info.audience,
    groups: [...request.groups],
    iat: now,
    exp: now + (request.lifetime ?? 3600),
  });
}

export const devTokenCommand: Command = {
  summary: 'print a bearer token that `veil dev` in this folder accepts (for scripts)',
  help: `Usage: veil dev token [--approver] [--sub NAME] [--groups G1,G2] [--lifetime SECONDS] [--state DIR]

Mints a token with the issuer key \`veil dev\` keeps in its state folder, and
prints only the token. \`veil dev\` need not be running: the token is valid for
any \`veil dev\` run on that folder, now or later, with the same --issuer-port.
Exits 0 with the token; 1 if the state folder cannot be read or is damaged;
2 on a usage error or when no veil dev ever ran on that folder.

A caller token (the default) is for the proxy. Defaults: --sub alice
--groups ml-readers.

With --approver, a token for the local approvals API that \`veil approvals …
--dev\` presents (put it in VEIL_APPROVER_TOKEN, or pass --token). Its subject
is the approver recorded with each decision, its groups decide whether they
may approve, and nobody approves their own request. Defaults: --sub bob
--groups ml-approvers (the approver group of examples/policy.yaml).

Options:
  --approver          a token for the approvals API, not the proxy
  --sub NAME          the subject (who the token says you are)
  --groups G1,G2      the groups claim
  --lifetime SECONDS  how long it is valid (default 3600, at most 604800)
  --state DIR         the state folder of veil dev (default .veil)`,
  async run(args) {
    const { values } = parseOptions('dev token', args, {
      approver: { type: 'boolean', default: false },
      sub: { type: 'string' },
      groups: { type: 'string' },
      lifetime: { type: 'string', default: '3600' },
      state: { type: 'string', default: '.veil' },
    });
    const lifetime = lifetimeSeconds(values.lifetime);
    const sub = values.sub ?? (values.approver ? 'bob' : 'alice');
    if (sub.trim() === '') throw new CliError('dev token: --sub must not be empty');
    const groups = (values.groups ?? (values.approver ? 'ml-approvers' : 'ml-readers'))
      .split(',')
      .map((g) => g.trim())
      .filter(Boolean);
    console.log(
      await mintDevToken({ sub, groups, approver: values.approver, lifetime, stateDir: values.state }),
    );
    return 0;
  },
};
