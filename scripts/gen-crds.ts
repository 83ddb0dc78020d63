// Writes crds/ from the zod schemas. A test fails when the files drift.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { allCrds } from '@veil/core';
import { stringify } from 'yaml';

export const CRD_HEADER = '# Generated from the zod schemas by `npm run gen:crds`; do not edit.\n';

export function renderCrd(crd: unknown): string {
  return CRD_HEADER + stringify(crd, { lineWidth: 0 });
}

if (import.meta.main) {
  const dir = join(import.meta.dirname, '..', 'crds');
  for (const [file, crd] of Object.entries(allCrds())) {
    await writeFile(join(dir, file), renderCrd(crd));
    console.log(`wrote crds/${file}`);
  }
}
