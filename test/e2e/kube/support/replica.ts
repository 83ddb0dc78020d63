// An injector replica as its own process, started the way the image starts it
// (node packages/injector/src/main.ts) with flags, logging JSON lines to a file.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type ControlPlane, type Managed, startProcess } from '../../../harness/index.ts';
import { eventually, repoRoot } from './cluster.ts';
import type { InjectorFiles } from './injector.ts';

export type Replica = {
  identity: string;
  process: Managed;
  logFile: string;
  webhookUrl: string;
  /** Its pull endpoint, which also certifies sidecars' admin ports. */
  pullUrl: string;
  /** Log lines so far, parsed. */
  log(): Promise<{ message: string; [field: string]: unknown }[]>;
};

export async function startReplica(
  cp: ControlPlane,
  files: InjectorFiles,
  identity: string,
  lease: { durationSeconds: number; renewSeconds: number },
): Promise<Replica> {
  const logFile = join(cp.dir, `${identity}.log`);
  const process = startProcess(
    identity,
    globalThis.process.execPath,
    [
      join(repoRoot, 'packages', 'injector', 'src', 'main.ts'),
      `--kubeconfig=${cp.kubeconfig}`,
      `--settings=${files.settingsFile}`,
      `--signing-key=${files.signingKeyFile}`,
      `--tls-cert=${files.tlsCertFile}`,
      `--tls-key=${files.tlsKeyFile}`,
      '--host=127.0.0.1',
      '--webhook-port=0',
      '--pull-port=0',
      `--identity=${identity}`,
      `--lease-duration=${lease.durationSeconds}`,
      `--lease-renew=${lease.renewSeconds}`,
    ],
    logFile,
  );
  const log = async () =>
    (await readFile(logFile, 'utf8').catch(() => ''))
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { message: string; [field: string]: unknown });
  const ready = await eventually(
    `${identity} ready`,
    async () => {
      if (process.child.exitCode !== null) throw new Error(`${identity} exited; see ${logFile}`);
      return (await log()).find((line) => line.message === 'ready');
    },
    60_000,
    100,
  );
  return { identity, process, logFile, webhookUrl: String(ready.webhook), pullUrl: String(ready.pull), log };
}
