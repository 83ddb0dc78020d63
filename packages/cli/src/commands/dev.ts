import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  createDevKeyring,
  signWithDevKey,
  startDemoModel,
  startDevIssuer,
  startSidecar,
} from '@veil/sidecar';
import { CliError, type Command, parseOptions } from '../command.ts';
import { openDevState, readDevInfo, writeDevInfo } from '../dev/state.ts';
import { loadPolicyFile } from '../policy/load.ts';

const AUDIENCE = 'veil';
const DEFAULT_POLICY = 'examples/policy.yaml';

/** The example policy next to the sources, for a `veil dev` started outside the repository root. */
function defaultPolicyFile(): string {
  if (existsSync(DEFAULT_POLICY)) return DEFAULT_POLICY;
  return join(import.meta.dirname, '..', '..', '..', '..', DEFAULT_POLICY);
}

function port(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65_535)
    throw new CliError(`dev: --${name} must be a port number, not "${value}"`);
  return n;
}

export const devCommand: Command = {
  summary: 'run the proxy locally with a demo model, a token issuer and local evidence',
  help: `Usage: veil dev [options]

Runs Veil's sidecar on localhost in front of a demo embedding model (or your
own with --upstream), with a local OIDC token issuer, enforcing a policy file.
Prints a ready bearer token and example calls. Keys, tokens' issuer and the
audit trail live in ./.veil/. Stop with Ctrl-C.

Options:
  --port N          proxy port (default 8080)
  --admin-port N    admin port: /healthz, /readyz, /metrics (default 8081)
  --issuer-port N   local token issuer port (default 8082)
  --upstream URL    your model, e.g. http://127.0.0.1:11434 (default: the demo model)
  --api NAME        openai | tei | ollama | cohere | auto (default auto: by path)
  --policy FILE     EmbeddingPolicy to enforce (default ${DEFAULT_POLICY})
  --state DIR       where keys and evidence go (default .veil)

Mint more tokens from another terminal, in the same folder:
  veil dev token --sub bob --groups ml-readers`,
  async run(args) {
    const { values } = parseOptions('dev', args, {
      port: { type: 'string' },
      'admin-port': { type: 'string' },
      'issuer-port': { type: 'string' },
      upstream: { type: 'string' },
      api: { type: 'string' },
      policy: { type: 'string' },
      state: { type: 'string' },
    });
    const policyFile = values.policy ?? defaultPolicyFile();
    const loaded = await loadPolicyFile(policyFile);
    if (!loaded.ok) {
      for (const problem of loaded.problems)
        console.error(`${policyFile}: ${problem.path}: ${problem.message}`);
      throw new CliError(`dev: ${policyFile} is not a valid EmbeddingPolicy`, 1);
    }
    const state = await openDevState(values.state ?? '.veil');
    const issuer = await startDevIssuer({
      port: port(values['issuer-port'], 'issuer-port', 8082),
      keyring: await createDevKeyring('ES256', { signingKey: state.issuerKey }),
    });
    const model = values.upstream ? undefined : await startDemoModel();
    const spec = loaded.policy.spec;
    spec.authentication.oidc.push({
      issuer: issuer.issuer,
      audiences: [AUDIENCE],
      groupsClaim: 'groups',
      algorithms: ['ES256'],
    });
    const api = values.api ?? 'auto';
    if (!['openai', 'tei', 'ollama', 'cohere', 'auto'].includes(api)) {
      throw new CliError(`dev: --api must be openai, tei, ollama, cohere or auto, not "${api}"`);
    }
    const sidecar = await startSidecar({
      upstream: values.upstream ?? (model?.url as string),
      api: api as 'auto',
      host: '127.0.0.1',
      proxyPort: port(values.port, 'port', 8080),
      adminHost: '127.0.0.1',
      adminPort: port(values['admin-port'], 'admin-port', 8081),
      policyName: loaded.policy.metadata.name,
      auditDir: state.auditDir,
      hashKeyFile: state.hashKeyFile,
      defaultModel: 'default',
      pod: { namespace: 'local', name: 'veil-dev', uid: 'local' },
      cluster: 'local',
    });
    const applied = await sidecar.store.apply(loaded.policy.metadata.name, spec);
    if (!applied.ok) throw new CliError(`dev: the policy was refused: ${applied.reason}`, 1);
    await writeDevInfo(state.dir, {
      issuer: issuer.issuer,
      url: sidecar.url,
      adminUrl: sidecar.adminUrl,
      audience: AUDIENCE,
    });
    const token = await issuer.mint(
      { sub: 'alice', aud: AUDIENCE, groups: ['ml-readers'] },
      { lifetimeSeconds: 12 * 3600 },
    );
    printBanner({
      url: sidecar.url,
      adminUrl: sidecar.adminUrl,
      model: model?.url ?? values.upstream ?? '',
      policyFile,
      hash: applied.hash,
      token,
      auditDir: state.auditDir,
    });

    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    console.log('\nveil dev: shutting down…');
    await sidecar.close();
    await model?.close();
    await issuer.close();
    console.log('veil dev: stopped; evidence kept in', state.auditDir);
    return 0;
  },
};

function printBanner(info: {
  url: string;
  adminUrl: string;
  model: string;
  policyFile: string;
  hash: string;
  token: string;
  auditDir: string;
}): void {
  console.log(`veil dev is running

  proxy     ${info.url}   (OpenAI, TEI, Ollama and Cohere embedding routes)
  admin     ${info.adminUrl}   (/healthz /readyz /metrics)
  model     ${info.model}
  policy    ${info.policyFile}  ${info.hash}
  evidence  ${info.auditDir}

A token for sub=alice, groups=[ml-readers], valid 12 hours:

export VEIL_TOKEN=${info.token}

Try it:

  curl -s ${info.url}/v1/embeddings -H "Authorization: Bearer $VEIL_TOKEN" \\
    -H 'content-type: application/json' \\
    -d '{"model":"demo","input":["mail me at jane@example.com"]}'

More tokens:  veil dev token --sub bob --groups ml-readers
Stop:         Ctrl-C`);
}

export const devTokenCommand: Command = {
  summary: 'print a bearer token from the running `veil dev` issuer (for scripts)',
  help: `Usage: veil dev token [--sub NAME] [--groups G1,G2] [--lifetime SECONDS] [--state DIR]

Mints a token that the \`veil dev\` started in this folder accepts, and prints
only the token. Defaults: --sub alice --groups ml-readers --lifetime 3600.`,
  async run(args) {
    const { values } = parseOptions('dev token', args, {
      sub: { type: 'string', default: 'alice' },
      groups: { type: 'string', default: 'ml-readers' },
      lifetime: { type: 'string', default: '3600' },
      state: { type: 'string', default: '.veil' },
    });
    const lifetime = Number(values.lifetime);
    if (!Number.isInteger(lifetime) || lifetime < 1 || lifetime > 7 * 86_400) {
      throw new CliError('dev token: --lifetime is whole seconds, 1 to 604800');
    }
    const { info, issuerKey } = await readDevInfo(values.state);
    const now = Math.floor(Date.now() / 1000);
    const groups = values.groups
      .split(',')
      .map((g) => g.trim())
      .filter(Boolean);
    const token = await signWithDevKey(issuerKey, {
      iss: info.issuer,
      sub: values.sub,
      aud: info.audience,
      groups,
      iat: now,
      exp: now + lifetime,
    });
    console.log(token);
    return 0;
  },
};
