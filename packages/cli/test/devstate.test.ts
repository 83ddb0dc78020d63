// What `veil dev` keeps in ./.veil and what it prints: a state file that is
// there but unreadable or damaged is named as such, never taken for missing.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { CliError } from '../src/command.ts';
import { approvalsListCommand } from '../src/commands/approvals.ts';
import { devBanner, devCommand, devTokenCommand, mintDevToken } from '../src/commands/dev.ts';
import { openDevState } from '../src/dev/state.ts';

let root: string;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'veil-dev-state-'));
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

async function refused(run: Promise<unknown>, message: string): Promise<void> {
  await assert.rejects(run, (error: Error) => {
    assert.ok(error instanceof CliError, String(error));
    assert.equal(error.message, message);
    return true;
  });
}

/** A state folder as `veil dev` leaves it, its issuer key made by openDevState. */
async function devState(name: string): Promise<string> {
  const dir = join(root, name);
  await openDevState(dir);
  const info = {
    issuer: 'http://127.0.0.1:8082',
    url: 'http://127.0.0.1:8080',
    adminUrl: 'http://127.0.0.1:8081',
    audience: 'veil',
  };
  await writeFile(join(dir, 'dev.json'), JSON.stringify(info));
  return dir;
}

test('dev token says "no veil dev state" only when there is none', async () => {
  const dir = join(root, 'never-ran');
  await refused(
    mintDevToken({ sub: 'alice', groups: [], stateDir: dir }),
    `no veil dev state in ${dir}: start \`veil dev\` in this folder first`,
  );
  assert.match(await mintDevToken({ sub: 'alice', groups: [], stateDir: await devState('ran') }), /^ey/);
});

test('a state file that cannot be read is named with the reason', async () => {
  const dir = await devState('unreadable');
  const file = join(dir, 'dev.json');
  await rm(file);
  await mkdir(file);
  await refused(
    mintDevToken({ sub: 'alice', groups: [], stateDir: dir }),
    `cannot read ${file}: illegal operation on a directory (EISDIR)`,
  );
  // Nor does veil dev replace a key it cannot read with a new one.
  const keyDir = join(root, 'unreadable-key');
  await mkdir(join(keyDir, 'dev-issuer.jwk'), { recursive: true });
  await refused(
    openDevState(keyDir),
    `cannot read ${join(keyDir, 'dev-issuer.jwk')}: illegal operation on a directory (EISDIR)`,
  );
});

test('a damaged issuer key or dev.json is named, with the way out, not a JSON parser position', async () => {
  const dir = await devState('damaged');
  const key = join(dir, 'dev-issuer.jwk');
  for (const damage of ['{ kty', '{"kty":"EC"}', '[]']) {
    await writeFile(key, damage);
    const message = `${key} is not a JWK: delete it to make a new key`;
    await refused(openDevState(dir), message);
    await refused(mintDevToken({ sub: 'alice', groups: [], stateDir: dir }), message);
  }
  await rm(key);
  await openDevState(dir);
  await writeFile(join(dir, 'dev.json'), '{"issuer":');
  await refused(
    mintDevToken({ sub: 'alice', groups: [], stateDir: dir }),
    `${join(dir, 'dev.json')} is not veil dev state: restart veil dev to rewrite it`,
  );
});

/** The banner of a veil dev whose state is in `stateDir` (absolute, as veil dev holds it). */
const bannerFor = (stateDir: string) =>
  devBanner({
    info: {
      issuer: 'http://127.0.0.1:8082',
      url: 'http://127.0.0.1:8080',
      adminUrl: 'http://127.0.0.1:8081',
      audience: 'veil',
      approvals: { url: 'http://127.0.0.1:8083', audience: 'veil-dev-approvals', namespace: 'local' },
    },
    stateDir,
    auditDir: join(stateDir, 'audit'),
    policyFile: 'examples/policy.yaml',
    policyHash: 'sha256:0f',
    model: 'http://127.0.0.1:9000',
    token: 'ey.token',
  });

test("the banner's commands run from a fresh checkout, and its policy hash says what it hashes", () => {
  const banner = bannerFor(resolve('.veil'));
  assert.match(
    banner,
    /^ {2}policy {4}examples\/policy\.yaml {2}sha256:0f \(with veil dev's issuer added\)$/m,
  );
  // `veil` alone is not on PATH: `$(veil dev token …)` would export an empty token.
  for (const text of [banner, devCommand.help, approvalsListCommand.help]) {
    const commands = text.match(/(?:npx )?veil (?:dev token|approvals list --dev)\b/g) ?? [];
    assert.ok(commands.length > 0);
    for (const command of commands) assert.match(command, /^npx veil /, text);
  }
});

test("the banner's commands name the --state veil dev runs on, quoted for the shell, and none for the default", () => {
  const commands = /npx veil (?:dev token|approvals list --dev)[^\n(]*/g;
  const ofDefault = bannerFor(resolve('.veil')).match(commands) ?? [];
  assert.equal(ofDefault.length, 4);
  for (const command of ofDefault) assert.doesNotMatch(command, /--state/);
  const elsewhere = bannerFor("/srv/dev state/it's").match(commands) ?? [];
  assert.equal(elsewhere.length, 4);
  for (const command of elsewhere) assert.match(command, / --state '\/srv\/dev state\/it'\\''s'/);
});

test('a --state that is a file, or lies under one, is named as not a directory', async () => {
  const file = join(root, 'a-file');
  await writeFile(file, 'not a folder');
  await refused(openDevState(file), `--state ${file} is not a directory`);
  await refused(openDevState(join(file, 'state')), `--state ${join(file, 'state')} is not a directory`);
});

test('dev token says it mints from the keys in the folder: veil dev need not be running', () => {
  const help = devTokenCommand.help.replace(/\s+/g, ' ');
  assert.doesNotMatch(`${devTokenCommand.summary} ${help}`, /from the running/);
  assert.match(
    help,
    /`veil dev` need not be running: the token is valid for any `veil dev` run on that folder/,
  );
});
