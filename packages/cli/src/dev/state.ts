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
import { fsReason, isMissing } from '../fserror.ts';

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

/** A JWK veil dev can sign with: its private part is there. */
const issuerKeySchema = z.looseObject({ kty: z.string(), d: z.string() });

/** Created only where nothing is: a file that cannot be read must not be replaced by a new key. */
async function readOrCreate(file: string, create: () => Promise<string | Buffer>): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (error) {
    if (!isMissing(error)) throw unreadable(file, error);
    const content = await create();
    await writeFile(file, content, { mode: 0o600 }).catch((error: unknown) => {
      throw unwritable(file, error);
    });
    return Buffer.from(content);
  }
}

function unreadable(file: string, error: unknown): CliError {
  return new CliError(`cannot read ${file}: ${fsReason(error)}`, 1);
}

function unwritable(file: string, error: unknown): CliError {
  return new CliError(`cannot write ${file}: ${fsReason(error)}`, 1);
}

/** A file where the folder should be (or on its path) is named as that, not as mkdir's EEXIST. */
async function makeStateDir(root: string): Promise<void> {
  try {
    await mkdir(root, { recursive: true, mode: 0o700 });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' || code === 'ENOTDIR') throw new CliError(`--state ${root} is not a directory`, 1);
    throw new CliError(`cannot create --state ${root}: ${fsReason(error)}`, 1);
  }
}

/** The message names the file and the way out, not the JSON parser's position. */
function parseStateFile<S extends z.ZodType>(
  file: string,
  text: string,
  schema: S,
  problem: string,
): z.output<S> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new CliError(`${file} ${problem}`, 1);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new CliError(`${file} ${problem}`, 1);
  return parsed.data;
}

function parseIssuerKey(file: string, text: string): JWK {
  return parseStateFile(file, text, issuerKeySchema, 'is not a JWK: delete it to make a new key');
}

export async function openDevState(dir: string): Promise<DevState> {
  const root = resolve(dir);
  await makeStateDir(root);
  const issuerKeyFile = join(root, 'dev-issuer.jwk');
  const issuerKeyText = await readOrCreate(issuerKeyFile, async () =>
    JSON.stringify(await generateDevSigningKey()),
  );
  const issuerKey = parseIssuerKey(issuerKeyFile, issuerKeyText.toString('utf8'));
  const hashKeyFile = join(root, 'hash.key');
  await readOrCreate(hashKeyFile, async () => randomBytes(32));
  return { dir: root, issuerKey, hashKeyFile, auditDir: join(root, 'audit') };
}

export async function writeDevInfo(dir: string, info: DevInfo): Promise<void> {
  const file = join(dir, 'dev.json');
  await writeFile(file, `${JSON.stringify(info, null, 2)}\n`).catch((error: unknown) => {
    throw unwritable(file, error);
  });
}

export async function readDevInfo(dir: string): Promise<{ info: DevInfo; issuerKey: JWK }> {
  const root = resolve(dir);
  const infoFile = join(root, 'dev.json');
  const issuerKeyFile = join(root, 'dev-issuer.jwk');
  const [infoText, issuerKeyText] = await Promise.all([
    readStateFile(root, infoFile),
    readStateFile(root, issuerKeyFile),
  ]);
  return {
    info: parseStateFile(
      infoFile,
      infoText,
      devInfoSchema,
      'is not veil dev state: restart veil dev to rewrite it',
    ),
    issuerKey: parseIssuerKey(issuerKeyFile, issuerKeyText),
  };
}

/** Absent means no veil dev ran here; any other failure is told as it is. */
async function readStateFile(root: string, file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    if (isMissing(error)) {
      throw new CliError(`no veil dev state in ${root}: start \`veil dev\` in this folder first`);
    }
    throw unreadable(file, error);
  }
}
