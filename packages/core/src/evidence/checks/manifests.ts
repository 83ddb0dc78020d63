// A stream's manifests, read from their bytes. Only a manifest that parses, is
// stored as the canonical JSON it was signed as, and names the key it is stored
// at joins the chain the stream checks walk.

import { sha256Hex } from '../hash.ts';
import { type Manifest, manifestKey, manifestSchema, maxManifestBytes } from '../manifest.ts';
import { canonicalJson } from '../signing.ts';
import type { Report } from './findings.ts';
import type { StreamLayout } from './layout.ts';
import type { Entry } from './stream-state.ts';

/** Parses each manifest and binds it to its object key; a manifest that fails is left out of the chain. */
export function readManifests(layout: StreamLayout, report: Report): Map<number, Entry> {
  const entries = new Map<number, Entry>();
  for (const [seq, { key, object }] of layout.manifests) {
    if (!object.bytes) {
      report('INVALID', layout.stream, key, 'missing-bytes', 'the manifest content was not fetched');
      continue;
    }
    // Refused before anything decodes it: a planted object at a manifest key is read by every verify, trusted keys or not.
    if (object.bytes.length > maxManifestBytes) {
      const message = `larger than ${maxManifestBytes} bytes: no manifest is`;
      report('INVALID', layout.stream, key, 'manifest-malformed', message);
      continue;
    }
    const manifest = parseManifest(object.bytes);
    if (!manifest.ok) {
      report('INVALID', layout.stream, key, 'manifest-malformed', manifest.error);
      continue;
    }
    const { value } = manifest;
    if (!isCanonical(object.bytes, value)) {
      const message =
        'not stored as the RFC 8785 canonical JSON of its content: other parsers may read it otherwise';
      report('INVALID', layout.stream, key, 'manifest-malformed', message);
      continue;
    }
    if (value.key !== key || manifestKey(layout.prefix, value.seq) !== key) {
      report('INVALID', layout.stream, key, 'key-mismatch', `the manifest was written for ${value.key}`);
      continue;
    }
    if (value.stream !== layout.stream) {
      report('INVALID', layout.stream, key, 'stream-mismatch', `the manifest names stream ${value.stream}`);
    }
    entries.set(seq, { key, manifest: value, sha256: sha256Hex(object.bytes) });
  }
  return entries;
}

/**
 * The sidecar stores exactly the canonical JSON it signed. Any other bytes
 * (a duplicate key, which JSON parsers resolve differently) could say one thing
 * to this verifier and another to an auditor's own.
 */
function isCanonical(bytes: Uint8Array, manifest: Manifest): boolean {
  return Buffer.compare(bytes, Buffer.from(canonicalJson(manifest), 'utf8')) === 0;
}

type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

function parseManifest(bytes: Uint8Array): Parsed<Manifest> {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    return { ok: false, error: 'not UTF-8 JSON' };
  }
  const result = manifestSchema.safeParse(json);
  if (result.success) return { ok: true, value: result.data };
  const fields = [...new Set(result.error.issues.map((issue) => issue.path.join('.') || '(manifest)'))];
  return { ok: false, error: `not a veil.manifest/v1 manifest: ${fields.join(', ')}` };
}
