// The keys an auditor trusts to sign streams, from a file the auditor keeps:
// either lines `KEYID [STREAMS]` (an RFC 7638 thumbprint, then optionally the
// stream names it may sign as a glob), `#` starting a comment, or JSON: a JWK
// set `{"keys": [...]}` or an array, each entry a public JWK, a key id, or
// `{"key": <JWK or key id>, "streams": "<glob>"}`. A key without streams may
// sign any stream.
import { readFile } from 'node:fs/promises';
import { ed25519PublicJwkSchema, jwkThumbprint, type TrustedKey } from '@veil/core';
import { z } from 'zod';
import { CliError } from '../command.ts';
import { fsReason } from '../fserror.ts';

const keyIdSchema = z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'is not a key id (an RFC 7638 thumbprint)');
// Stream names hold no whitespace, and a pattern with none stays one token of a text line.
const streamsSchema = z.string().regex(/^\S+$/);
// A JWK carrying `streams` itself would otherwise pass as a key trusted for every stream.
const jwkSchema = ed25519PublicJwkSchema.loose().refine((jwk) => !('streams' in jwk));
const keySchema = z
  .union([keyIdSchema, jwkSchema])
  .transform((key) =>
    typeof key === 'string' ? key : jwkThumbprint({ kty: key.kty, crv: key.crv, x: key.x }),
  );
const entrySchema = z.union([
  z
    .strictObject({ key: keySchema, streams: streamsSchema })
    .transform(({ key, streams }) => ({ keyId: key, streams })),
  keySchema.transform((keyId): TrustedKey => ({ keyId })),
]);
const jsonSchema = z.union([z.object({ keys: z.array(entrySchema) }), z.array(entrySchema)]);

export async function loadTrustedKeys(file: string): Promise<TrustedKey[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new CliError(`--trusted-keys ${file}: ${fsReason(error)}`);
  }
  return parseTrustedKeys(file, text);
}

export function parseTrustedKeys(file: string, text: string): TrustedKey[] {
  const trimmed = text.trim();
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) return fromJson(file, trimmed);
  const lines = trimmed
    .split('\n')
    .map((line) => line.replace(/#.*/, '').trim())
    .filter((line) => line !== '');
  if (lines.length === 0) throw new CliError(`--trusted-keys ${file}: no key in the file`);
  return lines.map((line, index) => fromLine(file, line, index));
}

function fromLine(file: string, line: string, index: number): TrustedKey {
  const [keyId = '', streams, ...rest] = line.split(/\s+/);
  if (!keyIdSchema.safeParse(keyId).success || rest.length > 0) {
    throw new CliError(
      `--trusted-keys ${file}: entry ${index + 1} is not a key id (an RFC 7638 thumbprint), optionally followed by a stream pattern`,
    );
  }
  return streams === undefined ? { keyId } : { keyId, streams };
}

function fromJson(file: string, text: string): TrustedKey[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new CliError(`--trusted-keys ${file}: not JSON`);
  }
  const parsed = jsonSchema.safeParse(value);
  if (!parsed.success) {
    throw new CliError(
      `--trusted-keys ${file}: expected {"keys": [...]} or an array, each entry an Ed25519 JWK, a key id, or {"key": JWK or key id, "streams": pattern}`,
    );
  }
  const entries = Array.isArray(parsed.data) ? parsed.data : parsed.data.keys;
  if (entries.length === 0) throw new CliError(`--trusted-keys ${file}: no key in the file`);
  return entries;
}
