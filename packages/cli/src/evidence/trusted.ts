// The keys an auditor trusts to sign streams, from a file the auditor keeps:
// either key ids (RFC 7638 thumbprints) one a line, `#` starting a comment, or
// JSON: a JWK set `{"keys": [...]}` or an array of public JWKs and key ids.
import { readFile } from 'node:fs/promises';
import { ed25519PublicJwkSchema, jwkThumbprint } from '@veil/core';
import { z } from 'zod';
import { CliError } from '../command.ts';

const keyIdSchema = z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'is not a key id (an RFC 7638 thumbprint)');
const entrySchema = z.union([keyIdSchema, ed25519PublicJwkSchema.loose()]);
const jsonSchema = z.union([z.object({ keys: z.array(entrySchema) }), z.array(entrySchema)]);

export async function loadTrustedKeys(file: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new CliError(`--trusted-keys ${file}: ${(error as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  }
  return parseTrustedKeys(file, text);
}

export function parseTrustedKeys(file: string, text: string): string[] {
  const trimmed = text.trim();
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) return fromJson(file, trimmed);
  const ids = trimmed
    .split('\n')
    .map((line) => line.replace(/#.*/, '').trim())
    .filter((line) => line !== '');
  ids.forEach((id, index) => {
    if (!keyIdSchema.safeParse(id).success) {
      throw new CliError(
        `--trusted-keys ${file}: entry ${index + 1} is not a key id (an RFC 7638 thumbprint)`,
      );
    }
  });
  if (ids.length === 0) throw new CliError(`--trusted-keys ${file}: no key in the file`);
  return ids;
}

function fromJson(file: string, text: string): string[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new CliError(`--trusted-keys ${file}: not JSON`);
  }
  const parsed = jsonSchema.safeParse(value);
  if (!parsed.success) {
    throw new CliError(
      `--trusted-keys ${file}: expected {"keys": [Ed25519 JWK...]} or an array of JWKs or key ids`,
    );
  }
  const entries = Array.isArray(parsed.data) ? parsed.data : parsed.data.keys;
  if (entries.length === 0) throw new CliError(`--trusted-keys ${file}: no key in the file`);
  return entries.map((entry) =>
    typeof entry === 'string' ? entry : jwkThumbprint({ kty: entry.kty, crv: entry.crv, x: entry.x }),
  );
}
