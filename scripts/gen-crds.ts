// Writes crds/ and the chart's copy from the zod schemas. Tests fail when
// either drifts.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { allCrds } from '@veil/core';
import { stringify } from 'yaml';

export const CRD_HEADER = '# Generated from the zod schemas by `npm run gen:crds`; do not edit.\n';

export function renderCrd(crd: unknown): string {
  return CRD_HEADER + stringify(crd, { lineWidth: 0 });
}

if (import.meta.main) {
  const root = join(import.meta.dirname, '..');
  for (const dir of ['crds', join('charts', 'veil', 'crds')]) {
    for (const [file, crd] of Object.entries(allCrds())) {
      await writeFile(join(root, dir, file), renderCrd(crd));
      console.log(`wrote ${join(dir, file)}`);
    }
  }
}
