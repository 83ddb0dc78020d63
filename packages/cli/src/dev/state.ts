// `veil dev` keeps its keys and coordinates in ./.veil so that `veil dev
// token`, run later in the same folder, can mint tokens the running sidecar
// accepts.
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { generateDevSigningKey } from '@veil/sidecar';
import type { JWK } from 'jose';
import { z } from 'zod';
import { CliError } from '../command.ts';

const devInfoSchema = z.object({
  issuer: z.url(),
  url: z.url(),
  adminUrl: z.url(),
  audience: z.string(),
  /** The local approvals API; absent in state written before it existed. */
  approvals: z.object({ url: z.url(), audience: z.string().min(1), namespace: z.string().min(1) }).optional(),
});
export type DevInfo = z.infer<typeof devInfoSchema>;

export interface DevState {
  readonly dir: string;
  readonly issuerKey: JWK;
  readonly hashKeyFile: string;
  readonly auditDir: string;
}

async function readOrCreate(file: string, create: () => Promise<string | Buffer>): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch {
    const content = await create();
    await writeFile(file, content, { mode: 0o600 });
    return Buffer.from(content);
  }
}

export async function openDevState(dir: string): Promise<DevState> {
  const root = resolve(dir);
  await mkdir(root, { recursive: true, mode: 0o700 });
  const issuerKey = JSON.parse(
    (
      await readOrCreate(join(root, 'dev-issuer.jwk'), async () =>
        JSON.stringify(await generateDevSigningKey()),
      )
    ).toString('utf8'),
  ) as JWK;
  const hashKeyFile = join(root, 'hash.key');
  await readOrCreate(hashKeyFile, async () => randomBytes(32));
  return { dir: root, issuerKey, hashKeyFile, auditDir: join(root, 'audit') };
}

export async function writeDevInfo(dir: string, info: DevInfo): Promise<void> {
  await writeFile(join(dir, 'dev.json'), `${JSON.stringify(info, null, 2)}\n`);
}

export async function readDevInfo(dir: string): Promise<{ info: DevInfo; issuerKey: JWK }> {
  try {
    const info = devInfoSchema.parse(JSON.parse(await readFile(join(dir, 'dev.json'), 'utf8')));
    const issuerKey = JSON.parse(await readFile(join(dir, 'dev-issuer.jwk'), 'utf8')) as JWK;
    return { info, issuerKey };
  } catch {
    throw new CliError(`no veil dev state in ${resolve(dir)}: start \`veil dev\` in this folder first`);
  }
}
